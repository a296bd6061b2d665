"""repmatch.networks: the networks that are compared, as stitchable lists of named layers.

Layout (one job per module; none imports the method families such as ``repmatch.stitching``):

* :mod:`.stitchable` — :class:`StitchableNet` (named blocks + head, cut into a front and a back
  half), :func:`layer_index`, :func:`select_layers`;
* :mod:`.zoo` — the built-in architectures (:func:`build_model`; their layer names without torch
  are :mod:`repmatch.architectures`, read while Snakemake parses); :mod:`.vit` — the ViTs;
* :mod:`.hooked` — :class:`HookedNet`: any ``nn.Module`` with layers reached through forward hooks;
* :mod:`.factory` (torch-free until called) — networks from the user's code: factory import,
  weights, the parse-time check :func:`check_factory_networks`;
* :mod:`.checkpoints` — checkpoint I/O (atomic, byte-reproducible, verified on load).

Names resolve lazily (:func:`repmatch._exports.lazy`): importing the package, or ``.factory``,
does not import torch. The ViT builder is ``repmatch.networks.vit.vit`` (the package attribute
``vit`` is that module).
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "stitchable": ["StitchableNet", "layer_index", "select_layers"],
    "zoo": ["build_model", "plain", "smallcnn", "vgg11", "vgg16"],
    "vit": ["VIT_TI", "VIT_TINY_TEST", "ViTSpec", "tiny_test_spec", "vit_layer_names"],
    "hooked": ["HookError", "HookedNet", "check_module_paths", "module_paths"],
    "factory": ["NetworkError", "build", "check_factory_networks", "check_network", "from_meta", "import_factory",
                "layer_paths", "load_weights", "network_meta", "read_state_dict", "wrap"],
    "checkpoints": ["checkpoint_meta", "load_checkpoint", "load_torch", "load_trained", "save_checkpoint", "save_torch",
                    "torch_bytes"],
})  # fmt: skip
