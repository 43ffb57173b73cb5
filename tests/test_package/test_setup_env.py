"""tools/setup_env.sh (which both README commands source) never leaves an environment marked
as installed after a failed step: the next run installs again."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def source_setup(venv: Path, torch_spec: str) -> subprocess.CompletedProcess:
    script = 'set -euo pipefail\nsource tools/setup_env.sh\necho "reached the command"\n'
    return subprocess.run(['bash', '-c', script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={'PATH': '/usr/bin:/bin:/usr/local/bin',
                                            'VENV': str(venv), 'TORCH_SPEC': torch_spec})


def test_a_failing_install_stops_and_is_retried(tmp_path):
    venv, missing = tmp_path / 'venv', tmp_path / 'no-such-torch.whl'
    for attempt in range(2):
        proc = source_setup(venv, str(missing))
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert 'Installing' in proc.stdout  # the second attempt installs again
        assert proc.stderr.strip().splitlines()[-2] == (
            f'error: setting up {venv} failed at: pip install {missing}')
        assert 'reached the command' not in proc.stdout
        assert not (venv / '.denseclip-installed').exists()
