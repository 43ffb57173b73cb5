from pathlib import Path

from setuptools import find_packages, setup


def read_requirements() -> list[str]:
    lines = Path(__file__).with_name('requirements.txt').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name='denseclip',
    version='0.1.0',
    description='DenseCLIP (CVPR 2022) as a plug-in of mmsegmentation 1.x',
    long_description=Path(__file__).with_name('README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['denseclip', 'denseclip.*']),
    python_requires='>=3.10',  # X | None annotations are evaluated at import time,
    install_requires=read_requirements(),
    extras_require={
        # the maintained, pure-Python OneDL distributions of mmengine / mmcv / mmsegmentation
        'onedl': ['onedl-mmengine>=0.10.12', 'onedl-mmcv>=2.3.6', 'onedl-mmsegmentation>=1.4.2'],
        # the last upstream releases; mmcv 2.1.0 is built from source separately (README)
        'openmmlab': ['mmengine==0.10.7', 'mmsegmentation==1.2.2'],
        # ONNX export and ONNX Runtime inference (tools/export_onnx.py, tools/infer.py)
        'deploy': ['onnx>=1.16', 'onnxscript>=0.2', 'onnxruntime>=1.18'],
        # open_clip's models as DenseCLIP towers (configs/open_clip/); open_clip imports
        # torchvision, so install the torchvision that matches your torch first
        'open_clip': ['open_clip_torch==3.3.0', 'timm==1.0.31'],
        # hypothesis: the generated bad inputs of tests/test_engine/test_generated_faults.py
        'tests': ['pytest', 'hypothesis>=6.100'],
    },
)
