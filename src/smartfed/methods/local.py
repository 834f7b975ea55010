"""`local`: SmartFed's client training with no federation. Every client trains its own routers for
`rounds` rounds from the same start and nothing is sent; with EEQA each client re-allocates its
quotas from its own scores. The held-out loss is the mean over the clients' own models."""

from smartfed.methods.smartfed import SmartFed


class Local(SmartFed):
    name = "local"
    federated = False
