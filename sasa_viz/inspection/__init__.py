"""Looking inside a model: every tensor of a forward pass, and what it means.

    trace        runs a model and records every attention layer (Trace, LayerTrace,
                 PixelTrace)
    explain      what a pixel's numbers mean: entropy, effective kernels, the output
                 equation, counterfactuals
    statistics   per-head statistics over many images, and a layer in a sentence
    experiments  the paper's claims as experiments: shift, permutation, border
    cost         parameters and multiply-adds, Table 1
    network      the network as parts (stem, blocks, pool, classifier) and layers'
                 names for people
    reach        which input pixels a pixel draws on: attention rollout, the exact
                 gradient (effective receptive field), the theoretical window
    objects      how much of a head's weight falls on a scene's object

Imports: sasa_viz.models, sasa_viz.attention, sasa_viz.files, sasa_viz.numbers.
"""
