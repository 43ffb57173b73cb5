# Table 2 ablation, pre-model prompting: learned queries attend to the visual context and
# become the text encoder's context tokens (the text branch runs per image). The post-model
# row of Table 2 is the main config, ../denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py.
_base_ = '../denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
model = dict(prompting='pre')
