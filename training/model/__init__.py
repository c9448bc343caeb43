"""Model: the training knobs, the pipeline steps and the pipeline that fits them."""
