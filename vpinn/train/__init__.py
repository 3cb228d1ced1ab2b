"""Training: schedules, the minibatch and full-batch objectives, checkpoints, the loop."""

from vpinn.train.objective import full_loss_backward, minibatch_loss
from vpinn.train.schedules import learning_rate
from vpinn.train.trainer import Trainer, TrainResult

__all__ = ["TrainResult", "Trainer", "full_loss_backward", "learning_rate", "minibatch_loss"]
