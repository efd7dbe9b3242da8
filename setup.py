"""Package layout: the folders launcher/, train/ and dataprep/ install as llm_launch.launcher,
llm_launch.train and llm_launch.dataprep (docs/imports.md says why); conf/, recipes/ and data/sample/ go
into the wheel beside them, as llm_launch/conf, llm_launch/recipes and llm_launch/data/sample, so that
llm_launch.launcher.PROJECT_ROOT (the folder above launcher/: the checkout in an editable install, the
installed llm_launch folder otherwise) holds them either way. pyproject.toml holds everything else."""

from setuptools import find_packages, setup

FOLDERS = ("launcher", "train", "dataprep")
DATA_FOLDERS = {"conf": ["**/*.yaml"], "recipes": ["*.yaml"], "data": ["sample/**/*"]}
"""Folders shipped as package data (setuptools package_data globs,
https://setuptools.pypa.io/en/latest/userguide/datafiles.html#package-data)."""

setup(
    package_dir={f"llm_launch.{folder}": folder for folder in (*FOLDERS, *DATA_FOLDERS)},
    packages=[f"llm_launch.{package}" for package in find_packages(include=[f"{folder}*" for folder in FOLDERS])]
    + [f"llm_launch.{folder}" for folder in DATA_FOLDERS],
    package_data={f"llm_launch.{folder}": globs for folder, globs in DATA_FOLDERS.items()},
)
