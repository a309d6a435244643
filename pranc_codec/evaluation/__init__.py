"""Rate–distortion evaluation: Bjøntegaard metrics, reference codecs, the Kodak harness.

Kept apart from the codec proper: nothing under ``pranc_codec`` outside this
package imports it, and it needs the ``[eval]`` extra (scipy, matplotlib).
"""
