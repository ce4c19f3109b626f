"""train."""

from trainwell.callable_package import make_callable

make_callable(__name__, "trainwell.api:train")  # trainwell.train(config): callable_package.py says why
