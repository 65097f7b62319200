"""Training input on TensorFlow's tf.data service: the dispatcher and worker programs, and
the hand-off `tfzoo.train --data_service` uses.

    python -m tfzoo.data.service dispatcher --port=5050 [--work_dir=DIR]
    python -m tfzoo.data.service worker --dispatcher=HOST:5050 --port=5051 [--worker_address=HOST]
    python -m tfzoo.train --config=... --data=DIR --data_service=grpc://HOST:5050

Workers run the whole training input pipeline (read, decode, augment, flow stacks, batch):
they must see `--data` at the same path. The trainer only consumes batches. The pipeline runs
in `distributed_epoch` mode: the dispatcher hands each TFRecord shard of a pass to one worker,
so every training example is produced once per pass over the data (not once per worker); a
pass's examples arrive in no fixed order, and a Keras epoch (steps_per_epoch batches) ends
where its batch count says, not exactly at a pass boundary.

What the service guarantees when a worker dies mid-epoch (TF 2.21): the trainer keeps reading
from the remaining workers and training goes on; the shards the dead worker was reading, and
its buffered elements, are lost for that pass (at-most-once: no example is repeated, some may
be missed until the next pass). A worker that comes back (same address) or a new one
registers and takes new shards. A dispatcher started with --work_dir keeps its state in a
journal (fault_tolerant_mode) and resumes after a restart; without it, a dispatcher restart
ends the job and the trainer fails. Evaluation stays local.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from absl import flags

from tfzoo.errors import TfzooError, report

PROG = "python -m tfzoo.data.service"
PROBE_SECONDS = 10.0


class ServiceError(TfzooError):
    """A tf.data service address that is malformed or does not answer."""


def parse_address(address: str, *, what: str = "--data_service") -> tuple[str, int]:
    """'grpc://host:port' or 'host:port' -> (host, port), or a ServiceError naming it."""
    text = str(address).strip()
    rest = text[len("grpc://"):] if text.startswith("grpc://") else text
    host, sep, port = rest.rpartition(":")
    if "://" in rest or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServiceError(f"{what}={address!r}: expected grpc://HOST:PORT (the dispatcher's "
                           "address, e.g. grpc://localhost:5050)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, *, what: str = "dispatcher",
                    timeout: float | None = None) -> str:
    """Connects to a dispatcher or worker address; returns 'grpc://host:port' or raises a
    one-line ServiceError naming it (the service itself would retry silently forever)."""
    host, port = parse_address(address, what=f"the {what} address")
    timeout = PROBE_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout)):
                return f"grpc://{host}:{port}"
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ServiceError(f"tf.data service {what} at {host}:{port} is not reachable "
                                   f"({e.strerror or e}); start it with `{PROG} {what} "
                                   f"--port={port}` or pass its address") from None
            time.sleep(0.2)


def distribute(dataset, address: str, *, job_name: str | None = None):
    """`dataset` processed by the service at `address` in distributed_epoch mode (each element
    of a pass produced once, whichever worker makes it). Consumers with the same `job_name`
    (the workers of a multi-worker trainer) share one job: each element goes to one of them."""
    import tensorflow as tf  # deferred: loads TensorFlow

    # compression=None: the default ("AUTO") snappy-compresses every element on the worker and
    # decompresses it in the trainer, which for float clips (a 4-clip batch of two-stream
    # ST-ResNet input is about 200 MB) saves few bytes and makes the one consumer the bottleneck
    # whatever the number of workers
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=address, job_name=job_name, compression=None))


def check_workers(address: str, *, timeout: float = 60.0) -> None:
    """Fetches one element through the service: a dispatcher without a reachable worker
    otherwise makes the trainer wait forever."""
    import tensorflow as tf  # deferred: loads TensorFlow

    result: dict = {}

    def probe():
        try:
            result["value"] = int(next(iter(distribute(tf.data.Dataset.range(1), address))))
        except Exception as e:  # noqa: BLE001 - reported below as one line
            result["error"] = e

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if "value" not in result:
        why = f" ({type(result['error']).__name__})" if "error" in result else ""
        raise ServiceError(f"no tf.data service worker answered through the dispatcher at "
                           f"{address} within {timeout:.0f} s{why}; start one with `{PROG} "
                           f"worker --dispatcher={address.removeprefix('grpc://')}` and check that "
                           "its --worker_address is reachable from here")


# ----------------------------------------------------------------------------------- CLI
def define_flags(fv) -> None:
    flags.DEFINE_integer("port", 0, "Port to serve on (0: any free port, printed at start).",
                         lower_bound=0, upper_bound=65535, flag_values=fv)
    flags.DEFINE_string("work_dir", None, "dispatcher: a directory for its journal "
                        "(fault-tolerant mode: a restarted dispatcher resumes its jobs).",
                        flag_values=fv)
    flags.DEFINE_string("dispatcher", None, "worker: the dispatcher's HOST:PORT.",
                        flag_values=fv)
    flags.DEFINE_string("worker_address", None, "worker: the host name the trainers reach "
                        "it by (default: this machine's name; localhost for loopback).",
                        flag_values=fv)


def _serve(role: str, fv) -> int:
    import tensorflow as tf  # deferred: loads TensorFlow

    service = tf.data.experimental.service
    if role == "dispatcher":
        if fv.dispatcher or fv.worker_address:
            raise ServiceError("--dispatcher and --worker_address are worker flags; a "
                               "dispatcher takes --port and --work_dir")
        server = service.DispatchServer(service.DispatcherConfig(
            port=fv.port, work_dir=fv.work_dir, fault_tolerant_mode=bool(fv.work_dir)))
        print(f"tf.data service dispatcher at {server.target}", flush=True)
    else:
        if not fv.dispatcher:
            raise ServiceError("a worker needs --dispatcher=HOST:PORT (the dispatcher's address)")
        if fv.work_dir:
            raise ServiceError("--work_dir is a dispatcher flag")
        address = check_reachable(fv.dispatcher, what="dispatcher")
        from tfzoo.data.readers import keep_large_blocks  # deferred: loads TensorFlow

        keep_large_blocks()  # the worker runs the training pipelines
        worker_address = fv.worker_address or socket.gethostname()
        port = fv.port or _free_port()
        server = service.WorkerServer(service.WorkerConfig(
            dispatcher_address=address.removeprefix("grpc://"),
            worker_address=f"{worker_address}:{port}", port=port))
        print(f"tf.data service worker at {worker_address}:{port} (dispatcher {address})",
              flush=True)
    server.join()
    return 0


def _free_port() -> int:
    # WorkerConfig needs the port in worker_address before the server binds it
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fv = flags.FlagValues()
    define_flags(fv)
    if argv and argv[0] in ("-h", "--help", "--helpfull"):
        print(__doc__.split("\n\n")[1] + "\n" + fv.get_help(include_special_flags=False))
        return 0
    role = argv[0] if argv else None
    try:
        if role is None:
            raise ServiceError(f"give a role first: {PROG} dispatcher --port=P | worker "
                               "--dispatcher=HOST:P (--help lists the flags)")
        if role not in ("dispatcher", "worker"):
            raise ServiceError(f"{role!r} is not a role; expected `dispatcher` or `worker` "
                               f"first: {PROG} dispatcher --port=P | worker --dispatcher=HOST:P")
        try:
            rest = fv([PROG, *argv[1:]])
        except flags.Error as e:
            raise ServiceError(f"{e} (--help lists the flags)") from None
        if len(rest) > 1:
            raise ServiceError(f"unexpected arguments {rest[1:]}")
        return _serve(role, fv)
    except TfzooError as e:
        return report(e, PROG)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
