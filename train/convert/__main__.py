"""python -m llm_launch.train.convert: the same as llm-launch-convert."""

from llm_launch.train.convert.cli import main

if __name__ == "__main__":
    main()
