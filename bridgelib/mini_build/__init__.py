"""How the shipped mini world was made: `bridge mini build` (build.py: the judge and backbone,
backbone.py; the generator, generator.py) and `bridge mini calibrate` (calibrate.py).

The builders train with the course's own stages, so they sit above them; the world's data they
write is read through `bridgelib.mini`, which imports no stage. Only the CLI imports this package.
"""
