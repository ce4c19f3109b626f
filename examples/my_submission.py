"""A training algorithm for `trainwell bench`: heavy-ball SGD whose evaluations use the
average of its recent weights (Polyak averaging), a weight swap AlgoPerf allows before each
evaluation.

    trainwell bench --set 'bench.algorithms=["momentum", "my_submission:make_submission"]'
"""

import torch


class AveragedSGD(torch.optim.SGD):
    def __init__(self, params, lr, momentum, beta=0.99):
        super().__init__(params, lr=lr, momentum=momentum)
        self.beta, self.saved = beta, {}
        self.averages = {p: p.detach().clone() for g in self.param_groups for p in g["params"]}

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for p, avg in self.averages.items():
            avg.lerp_(p, 1 - self.beta)
        return loss

    @torch.no_grad()
    def eval(self):  # before an evaluation or a checkpoint: the averaged weights
        for p, avg in self.averages.items():
            self.saved[p] = p.detach().clone()
            p.copy_(avg)

    @torch.no_grad()
    def train(self):  # after it: back to the weights being trained
        for p, w in self.saved.items():
            p.copy_(w)
        self.saved.clear()


def make_submission(param_groups, hyperparameters, steps):
    return AveragedSGD(param_groups, lr=hyperparameters["lr"], momentum=0.9)
