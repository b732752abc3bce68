"""Looking inside a model: every tensor of a forward pass, and what it means.

    trace        runs a model and records every attention layer (Trace, LayerTrace,
                 PixelTrace)
    explain      what a pixel's numbers mean: entropy, effective kernels, the output
                 equation, counterfactuals
    statistics   per-head statistics over many images, and a layer in a sentence
    experiments  the paper's claims as experiments: shift, permutation, border
    cost         parameters and multiply-adds, Table 1

Imports: sasa_viz.models, sasa_viz.attention, sasa_viz.files, sasa_viz.numbers.
"""
