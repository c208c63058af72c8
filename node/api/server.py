"""The public gRPC server: `MarginService` + standard health checking + server reflection, on a
grpcio thread-pool server, optionally with TLS (certificate files from config).

Bounds: worker threads, concurrent RPCs (excess gets RESOURCE_EXHAUSTED from grpcio), message sizes
both ways, per-client rate (see `ServiceLimits`). `SimulateMargin` runs in a pool of worker processes
(`node.api.sandbox`, `SandboxConfig`): the server starts it with itself and stops it after the gRPC
server in `stop`; its admitted requests (workers + queue) are capped at half the gRPC threads, so
what-if calls never hold every thread. Health reports SERVING for "" and the margin service once
started, NOT_SERVING after `stop` or `set_serving(False)`. Reflection is served under both
`grpc.reflection.v1alpha` (grpcio-reflection's servicer) and `grpc.reflection.v1` (grpcurl's and
most current tools' first choice): the two protocols are wire-identical but for the package name, so
the v1 service is the same servicer behind a v1 method path, with a v1 copy of the descriptor in the
default pool so that v1 itself can be described. Nothing is persisted.
"""

from __future__ import annotations

import gc
import sys
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from node.api.errors import ApiError
from node.api.sandbox import Sandbox, SandboxConfig
from node.api.service import MarginService, Observer, ServiceLimits, make_guarded_service
from node.api.snapshot import SnapshotCache
from node.api.sources import NodeSources
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.ports import Store

WHATIF_TASK = "node.api.whatif:simulate_payload"  # what a sandbox worker runs for SimulateMargin
SERVICE_NAME = api_pb2.DESCRIPTOR.services_by_name["MarginService"].full_name
REFLECTION_V1_PACKAGE = "grpc.reflection.v1"
REFLECTION_V1_NAME = f"{REFLECTION_V1_PACKAGE}.ServerReflection"


@dataclass(frozen=True)
class ApiServerConfig:
    listen: str = "127.0.0.1:50051"  # host:port; port 0 picks a free one
    max_workers: int = 8  # few threads: the GIL makes more of them slower (bench/api_bench.py --workers)
    max_concurrent_rpcs: int = 256
    max_receive_bytes: int = 1 << 20
    max_send_bytes: int = 8 << 20
    tls_cert_file: str = ""  # PEM; TLS is on when cert and key are set
    tls_key_file: str = ""
    tls_client_ca_file: str = ""  # PEM; when set, clients must present a certificate signed by it
    snapshot_poll_s: float = 0.2
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


def _server_credentials(config: ApiServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert_file and not config.tls_key_file:
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ApiError("api.tls_cert_file and api.tls_key_file must be set together")
    key = Path(config.tls_key_file).read_bytes()
    cert = Path(config.tls_cert_file).read_bytes()
    ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class ApiServer:
    """A running public API server; `port` is the bound port."""

    def __init__(self, server: grpc.Server, port: int, health_servicer: health.HealthServicer,
                 snapshots: SnapshotCache, service: MarginService, sandbox: Sandbox) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.snapshots = snapshots
        self.service = service
        self.sandbox = sandbox

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def stop(self, grace_s: float = 2.0) -> None:
        self.set_serving(False)
        self.snapshots.stop()
        self.server.stop(grace_s).wait(grace_s + 1)
        self.sandbox.stop()


def freeze_startup_objects() -> None:
    """Move every object alive now (imports, config, first snapshot) out of the cyclic GC's reach, so
    full collections scan only what requests allocate: shorter pauses in the latency tail. Call
    once, after start-up, in the serving process."""
    gc.collect()
    gc.freeze()


GIL_SWITCH_INTERVAL_S = 0.0005


def get_sandbox_config(config: ApiServerConfig) -> SandboxConfig:
    """The what-if pool's config with its queue cut so that workers + queue <= half the threads."""
    sb = config.sandbox
    return replace(sb, queue=max(0, min(sb.queue, config.max_workers // 2 - sb.workers)))


def _register_reflection_v1_descriptor() -> None:
    """Add `grpc/reflection/v1/reflection.proto` (v1alpha's file renamed) to the default pool, once."""
    pool = descriptor_pool.Default()
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(fdp)
    old = "." + fdp.package + "."
    fdp.name, fdp.package = name, REFLECTION_V1_PACKAGE
    for message in fdp.message_type:
        for fd in message.field:
            if fd.type_name.startswith(old):  # descriptor.proto is proto2: assigning "" would set it
                fd.type_name = fd.type_name.replace(old, f".{REFLECTION_V1_PACKAGE}.")
    for method in fdp.service[0].method:
        method.input_type = method.input_type.replace(old, f".{REFLECTION_V1_PACKAGE}.")
        method.output_type = method.output_type.replace(old, f".{REFLECTION_V1_PACKAGE}.")
    pool.AddSerializedFile(fdp.SerializeToString())


def enable_reflection(server: grpc.Server, service_names: tuple[str, ...]) -> None:
    """Server reflection under v1alpha and v1 (see the module docstring)."""
    _register_reflection_v1_descriptor()
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1_NAME)
    servicer = reflection.ReflectionServicer(names)
    v1alpha = grpc.method_handlers_generic_handler(reflection.SERVICE_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)})
    v1 = grpc.method_handlers_generic_handler(REFLECTION_V1_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)})
    server.add_generic_rpc_handlers((v1alpha, v1))


def start_api_server(config: ApiServerConfig, store: Store, sources: NodeSources,
                     observe: Observer | None = None) -> ApiServer:
    """Build, bind and start the public server (raises `ApiError` when it cannot bind)."""
    creds = _server_credentials(config)
    # A ready RPC waits for the GIL behind the other workers; the default 5 ms switch interval puts
    # several such waits into the latency tail. 0.5 ms bounds each wait (measured in bench/api_bench.py).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    snapshots = SnapshotCache(store, poll_s=config.snapshot_poll_s)
    snapshots.start()
    # Each open stream holds a worker thread: keep at least half of the workers for unary calls.
    limits = replace(config.limits, max_streams=max(1, min(config.limits.max_streams, config.max_workers // 2)))
    # A what-if call holds a thread while it waits for its worker: the same cap for them.
    sandbox = Sandbox(WHATIF_TASK, get_sandbox_config(config))
    service = make_guarded_service(MarginService(store, snapshots, sources, sandbox, limits, observe))
    options = [
        ("grpc.max_receive_message_length", config.max_receive_bytes),
        ("grpc.max_send_message_length", config.max_send_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="api"),
                         options=options, maximum_concurrent_rpcs=config.max_concurrent_rpcs)
    api_pb2_grpc.add_MarginServiceServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    try:
        port = server.add_secure_port(config.listen, creds) if creds else server.add_insecure_port(config.listen)
    except RuntimeError as exc:
        snapshots.stop()
        raise ApiError(f"api.listen {config.listen}: cannot bind ({exc})") from exc
    if port == 0:
        snapshots.stop()
        raise ApiError(f"api.listen {config.listen}: cannot bind")
    sandbox.start()
    server.start()
    api = ApiServer(server, port, health_servicer, snapshots, service, sandbox)
    api.set_serving(True)
    return api
