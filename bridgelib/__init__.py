"""bridgelib: bridged transfer and Dataset Style Inversion (arXiv 2403.19866), as a course.

The package mirrors the course: data -> generate -> invert -> transfer -> report.
"""
import warnings as _warnings

from tqdm import TqdmWarning as _TqdmWarning

# huggingface_hub (under timm, transformers and diffusers) imports tqdm.auto, which in Jupyter
# without ipywidgets warns "IProgress not found" at the top of every notebook, before any setup
# runs. The package's bars need no widgets (files.progress), so that one message is hidden.
_warnings.filterwarnings("ignore", message="IProgress not found", category=_TqdmWarning)

from bridgelib.config import Config, ConfigError, get_config, load_config
from bridgelib.data import ImageSet
from bridgelib.datasets import load_dataset
from bridgelib.files import set_progress
from bridgelib.folders import load_image_folder
from bridgelib.metrics import leep_score, model_leep, recognisability
from bridgelib.mini.fashion import load_mini_part
from bridgelib.models import create_classifier, reinit_head
from bridgelib.notebook import (image_grid, mini_only, notebook_config, per_class_examples,
                                setup_notebook, shipped_store_config, store_banner)
from bridgelib.splits import kshot_subset
from bridgelib.transfer import RECIPES, evaluate, run_recipe, train_run

__version__ = "0.1.0"
