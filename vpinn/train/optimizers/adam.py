"""Adam on minibatch estimates: sample -> estimate -> gradient -> clip -> schedule -> update.

Each step samples every loss term's rule, reweights to an unbiased estimate of the loss,
backpropagates, sums the gradient over the ranks (compressed as ``train.compression`` says),
clips the gradient's global norm (``clip > 0``), sets the scheduled learning rate and takes an
Adam step (PyTorch's fused implementation on CUDA: one kernel for all parameters, no host
synchronisation).  Nothing is read back to the host: the report's loss and gradient norm stay on
the device until the loop logs them.
"""

from __future__ import annotations

import torch

from vpinn.train.estimate import minibatch_backward
from vpinn.train.optimizers import StepReport, TrainingProblem
from vpinn.train.schedules import Schedule


def clip_by_global_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The gradients' global norm before clipping (a device scalar); if ``max_norm > 0`` the
    gradients are scaled in place so that their norm is at most ``max_norm``."""
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


class Adam:
    """Adam with a :class:`~vpinn.train.schedules.Schedule` and global-norm clipping.

    Parameters
    ----------
    problem:
        The parameters, terms and samplers to train with.
    dtype:
        The dtype of the rule points (the network's dtype in this phase).
    steps:
        The phase's number of steps (the schedule's length).
    lr, warmup, decay, lr_final:
        The schedule (see :class:`~vpinn.train.schedules.Schedule`).
    clip:
        Maximum global gradient norm; 0: no clipping.
    """

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int, lr: float, warmup: int = 0,
                 decay: str = "cosine", lr_final: float = 1e-5, clip: float = 0.0):
        self.problem, self.dtype, self.clip = problem, dtype, clip
        self.schedule = Schedule(lr, steps, warmup, decay, lr_final)
        self.adam = torch.optim.Adam(problem.parameters, lr=lr, fused=problem.device.type == "cuda")
        self.count = 0

    def step(self) -> StepReport:
        problem = self.problem
        lr = self.schedule(self.count)
        for group in self.adam.param_groups:
            group["lr"] = lr
        self.adam.zero_grad(set_to_none=True)
        loss, parts = minibatch_backward(problem.terms, problem.samplers, problem.trial, self.dtype, problem.parameters,
                                         problem.group, key=self.count, compress=True)
        grad_norm = clip_by_global_norm(problem.parameters, self.clip)
        self.adam.step()
        self.count += 1
        return StepReport(loss, grad_norm, lr, problem.terms[0].batch * problem.group.size, problem.samplers[0].epochs,
                          parts)

    def state_dict(self) -> dict:
        return {"count": self.count, "adam": self.adam.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.adam.load_state_dict(state["adam"])
