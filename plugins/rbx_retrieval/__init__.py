"""First-party plugin for retrieval and hierarchical retrieval (H-GLDv2).

Data preparation lives in sub-packages that import nothing heavy at plugin
discovery time; ``rbx_retrieval.hgldv2`` builds the H-GLDv2 hierarchy files
(train / index / query Parquet + ``manifest.json``) from the GLDv2 CSVs.
"""

#: Data-preparation commands this plugin offers: name -> lazy "module:function".
#: ``hgldv2``: ``build_hgldv2(gldv2_root, out_dir, ...)``, see ``rbx_retrieval.hgldv2``.
BUILD_COMMANDS = {"hgldv2": "rbx_retrieval.hgldv2:build_hgldv2"}
