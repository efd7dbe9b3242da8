"""Package layout: the folders launcher/, train/ and dataprep/ install as llm_launch.launcher,
llm_launch.train and llm_launch.dataprep (docs/imports.md says why); pyproject.toml holds everything else."""

from setuptools import find_packages, setup

FOLDERS = ("launcher", "train", "dataprep")

setup(
    package_dir={f"llm_launch.{folder}": folder for folder in FOLDERS},
    packages=[f"llm_launch.{package}" for package in find_packages(include=[f"{folder}*" for folder in FOLDERS])],
)
