"""Tasks: what a model's outputs mean to train, evaluate, export and bench (`Task`)."""

from tfzoo.tasks.base import Task, get_task, register_task
from tfzoo.tasks.classification import CLASSIFICATION, ClassificationTask
from tfzoo.tasks.detection import DETECTION, DetectionTask

__all__ = ["Task", "ClassificationTask", "CLASSIFICATION", "DetectionTask", "DETECTION", "get_task", "register_task"]
