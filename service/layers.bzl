"""The layers of service/, bottom to top (service/ARCHITECTURE.md).

A layer may depend on its own folder and on layers ranked below it, never on a
sibling of the same rank or a layer above. Each folder's BUILD.bazel takes its
visibility from here, and scripts/check-layers reads the same ranks.
"""

LAYERS = {
    "base": 0,
    "policy": 1,
    "transport": 2,
    "pool": 3,
    "front": 3,
    "telemetry": 4,
    "admission": 5,
    "api": 6,
    "server": 7,
    "service": 8,
}

def visible_above(layer):
    """The visibility of a layer's units: the layers above it (and egressd),
    tests, benchmarks and the docs generator."""
    rank = LAYERS[layer]
    above = [
        "//service/%s:__pkg__" % name
        for name, r in sorted(LAYERS.items())
        if r > rank and name != "service"
    ]
    return ["//service:__pkg__"] + above + [
        "//bench:__subpackages__",
        "//docs:__subpackages__",
        "//tests:__subpackages__",
    ]
