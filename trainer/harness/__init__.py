"""The harness: the whole line and the paper's experiment, run end to end on this machine.

It sits at the top of the dependency graph: it may import every package, and nothing imports
it but the two verbs that run it (`trainer/verb_demo.py`, `trainer/verb_bench.py`; an import
contract in pyproject.toml holds this). The tools under `tools/` use it too.

* `paper`          the source paper's published figures, written down once;
* `line`           the verbs the demo runs, and a verb run in this process as typed;
* `demo`           `puf demo`: the line on the simulated factory, then the field checks;
* `demo_queries`   the demo's handheld photos of four kinds, verified by the device's pipeline;
* `demo_report`    the demo's tables beside the paper's figures, and its pictures;
* `bench/`         `puf bench`: the paper's recognition experiment at its scale.
"""
