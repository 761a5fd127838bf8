"""The factory line: label array design (CAD), laser job, stage positions and automatic
photography, with a simulated film, laser and microscope as first-class backends."""
