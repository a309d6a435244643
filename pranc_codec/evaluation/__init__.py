"""Rate–distortion evaluation: Bjøntegaard metrics, reference codecs, the Kodak harness.

Kept apart from the codec proper: nothing under ``pranc_codec`` outside this
package imports it. What it needs beyond the codec (scipy, matplotlib) are dependencies of the package;
the ``[eval]`` extra is kept for the commands that name it.
"""
