"""The simulated factory: film, laser, microscope and handheld camera.

These are first-class backends behind the same interfaces as the real hardware (the way
microscope software ships a demo camera), used by the demo, the tests and the benchmarks.
"""
