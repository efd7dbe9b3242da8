"""python -m train.convert: the same as llm-launch-convert."""

from train.convert.cli import main

if __name__ == "__main__":
    main()
