import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwell


class Majority(trainwell.Task):
    """Are most of 8 random bits set: a user task in a dozen lines."""

    name, metric, higher_is_better = "majority", "accuracy", True

    def __init__(self, n: int = 2048):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 2, (n, 8), generator=g).float()
        self.y = (self.x.sum(1) > 4).long()

    def build_model(self):
        return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))

    def train_data(self):
        return TensorDataset(self.x[:1792], self.y[:1792])

    def eval_data(self):
        return TensorDataset(self.x[1792:], self.y[1792:])

    def loss(self, model, batch):
        x, y = batch
        per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")
        return trainwell.LossOutput(sum=per_sample.sum(), count=torch.tensor(len(y)), per_sample=per_sample)

    def metrics(self, model, batch):
        x, y = batch
        correct = (model(x).argmax(-1) == y).float().sum()
        return {"accuracy": (correct, torch.tensor(len(y)))}


def make_task(n: int = 2048):
    return Majority(n)
