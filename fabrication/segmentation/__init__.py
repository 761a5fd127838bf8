"""`puf segment` on a batch: its fields found and read (`field_images`), each field cut into
labels (`segment_field`, `slots`), the crops and overlays written (`image_files`,
`segment_overlay`) and recorded in the registry (`segment_batch`). One label's segmentation is
the device's own (`edge_app.segment`), so the factory and the device cut alike."""
