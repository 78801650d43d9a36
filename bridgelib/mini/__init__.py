"""The mini world's data: its real target (fashion), its glyphs and its generator's words
(vocab). The stages read it, so it imports no stage; what builds the world is `bridgelib.mini_build`.
"""
