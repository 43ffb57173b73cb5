# Sourced by tools/dist_train.sh and tools/dist_test.sh: stops before torchrun starts when the
# rendezvous port is taken on this node (another job, or the last one still ending), which
# torchrun would otherwise report in a 40-line traceback. Only the master node binds the port.
if [ "${NODE_RANK:-0}" = 0 ]; then
    "${PYTHON:-python}" - "$MASTER_ADDR" "$PORT" <<'PY' || exit 1
import socket, sys

address, port = sys.argv[1], sys.argv[2]
if not port.isdigit() or not 0 < int(port) < 65536:
    sys.exit(f'error: PORT={port!r}: expected a TCP port number in 1..65535')
with socket.socket() as probe:
    try:
        probe.bind((address, int(port)))
    except OSError as err:
        with socket.socket() as free:
            free.bind((address if address != '0.0.0.0' else '', 0))
            suggestion = free.getsockname()[1]
        sys.exit(f'error: port {port} on {address} cannot be used for the rendezvous '
                 f'({err.strerror}): another job may hold it. Start with another port, '
                 f'e.g. PORT={suggestion} (set the same PORT on every node).')
PY
fi
