"""Offline measurement: FLOPs and parameters as the paper counted them (:mod:`.flops`, needs
fvcore), throughput and peak memory (:mod:`.benchmark`), training curves from the JSON logs
(:mod:`.training_curves`, needs matplotlib).

Imported by the tools and the tests, module by module; ``import denseclip`` never imports it.
"""
