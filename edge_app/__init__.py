"""Everything that runs on the verifying device, and the foundation the factory and
trainer build on: the batch layout, segmentation, preprocessing and the `puf` command."""
