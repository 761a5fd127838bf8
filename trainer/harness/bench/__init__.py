"""`puf bench`: the paper's recognition experiment at its scale, on this machine.

One job a module:

* `plan`      the sizes of a run (the paper's, `--quick`, or given) and its simulated batches;
* `database`  the enrolled fingerprints: simulated labels rendered by the microscope model,
              augmented as the paper did, through the shipped model; the fill to the paper's
              4,155,600 vectors; the per-pattern shards (cached, resumable);
* `queries`   new handheld photos (genuine, never enrolled, clones), cached as JPEGs, and
              their verdicts through the device's own pipeline (`edge_app.verify`);
* `keypoints` the SIFT + RANSAC baseline: exhaustive on a small gallery, and as a second
              stage re-checking the fingerprint search's top candidates;
* `scaling`   search time and memory from 10^4 to 10^7 enrolled vectors;
* `report`    the tables beside the paper's figures, and the pictures;
* `cli`       the verb.
"""
