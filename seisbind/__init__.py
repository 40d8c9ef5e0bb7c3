"""seisbind: bind seismic section images and seismic waveforms in one embedding space.

    import seisbind
    model = seisbind.create_model("tiny")          # or seisbind.SeisBindModel.from_pretrained(DIR)
    seisbind.list_models()
    embeddings, table = seisbind.embed_stream(model, obspy.read("event.mseed", format="MSEED"), inventory=inventory)
    embeddings, table = seisbind.embed_sections(model, "survey.sgy")
"""

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so `import seisbind` and the command line's --help stay fast
# instead of importing torch, timm and transformers up front.
_LAZY = {
    "create_model": "seisbind.models",
    "list_models": "seisbind.models",
    "get_model_config": "seisbind.models",
    "SeisBindModel": "seisbind.models",
    "embed_stream": "seisbind.io.api",
    "embed_sections": "seisbind.io.api",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seisbind' has no attribute {name!r}")
