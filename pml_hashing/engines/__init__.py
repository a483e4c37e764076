"""Search and encode beyond one machine: Milvus (a server or cluster), LanceDB (embedded,
local folders or object storage) and Ray Data (streaming encode).

Each engine is an optional extra (``pip install "pml-hashing[milvus]"``, ``[lance]``,
``[ray]``); the names below are imported on first use, so ``import pml_hashing.engines``
needs none of them.
"""

__all__ = [
    "LanceIndex",
    "MilvusIndex",
    "encode_with_ray",
    "engine_retrieval_report",
    "local_milvus_server",
]

_WHERE = {
    "MilvusIndex": "milvus_index",
    "LanceIndex": "lance_index",
    "encode_with_ray": "ray_encode",
    "engine_retrieval_report": "engine_report",
    "local_milvus_server": "milvus_server",
}


def __getattr__(name):
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
