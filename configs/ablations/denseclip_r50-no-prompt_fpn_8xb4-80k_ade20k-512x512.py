# Table 2 ablation, "language-guided fine-tuning" without context-aware prompting: learnable
# contexts only, no visual context in the text branch. The post-model row of Table 2 is the
# main config, ../denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py.
_base_ = '../denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
model = dict(prompting='none')
