"""Training: estimates of the loss, schedules, optimisers (one file each), the loop, checkpoints."""

from vpinn.train.estimate import full_loss_backward, minibatch_loss
from vpinn.train.loop import Observer, Phase, Trainer, TrainResult
from vpinn.train.optimizers import OPTIMIZERS, StepReport, TrainingProblem
from vpinn.train.schedules import Schedule

__all__ = ["OPTIMIZERS", "Observer", "Phase", "Schedule", "StepReport", "TrainResult", "Trainer", "TrainingProblem",
           "full_loss_backward", "minibatch_loss"]
