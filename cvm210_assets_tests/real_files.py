"""Where the tests find CVM's real rows: the files the package ships for the fake CVM."""

from importlib import resources
from pathlib import Path

REAL_FILES_DIR = Path(str(resources.files("cvm210_assets.fake_cvm").joinpath("real")))
