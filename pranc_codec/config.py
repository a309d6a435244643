"""Typed configuration with every default in one place.

The encoder is driven by :class:`CodecConfig`; the decoder needs none of it,
because everything that shapes the reconstruction travels in the ``.prc``
header (see ``FORMAT.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import IntEnum


class BasisKind(IntEnum):
    """How the pseudo-random basis entries are drawn (header field ``basis_kind``)."""

    GAUSSIAN = 0  # Irwin-Hall sum of four 16-bit uniforms: Gaussian-like, unit variance
    TERNARY = 1  # {-1, 0, +1} / sqrt(density), P(non-zero) = density (NTK-compression paper)
    IDENTITY = 2  # no basis: coefficients are the weights (direct-weight INR baseline)
    ORTHOGONAL = 3  # exactly orthogonal blocks H D2 P H D1 / m (randomized Hadamard), format v3


@dataclass(frozen=True)
class NetworkConfig:
    """The coordinate network (SIREN): (x, y) in [-1, 1]^2 -> colour in [0, 1]."""

    hidden_layers: int = 4  # number of sin() layers (3 -> 4: +0.3 to +0.9 dB, ABLATIONS.md G)
    omega0: float = 30.0  # SIREN frequency factor (first and hidden layers)
    # Wide networks (high rates) reach finer detail with a higher frequency factor:
    # 45 instead of 30 gave +0.2 / +0.35 dB at width 64 (1 bpp) and lost at widths
    # 21 and 31 (ABLATIONS.md J). Widths >= wide_from use omega0_wide; 0 = never.
    omega0_wide: float = 45.0
    wide_from: int = 56
    min_width: int = 8
    max_width: int = 512
    # The image is cut into tiles at most this many pixels a side, each with its
    # own coefficients over one shared basis (tiling.py); 0 = one network for all.
    tile_side: int = 256


@dataclass(frozen=True)
class BasisConfig:
    """The PRANC reparametrization theta = theta0(seed) + s_l * B_l(seed) @ alpha_l."""

    # Orthogonal by default: a square Gaussian block is ill-conditioned (condition
    # number ~ chunk size), which cost 0.9 dB against orthogonal blocks (ABLATIONS.md).
    kind: BasisKind = BasisKind.ORTHOGONAL
    # Parameters of a layer are split into chunks of about this many entries (a power
    # of two for the orthogonal kind); each chunk is a random subspace of its own
    # (block-diagonal basis, bounded memory).
    chunk_size: int = 256
    # Network parameters per coefficient (n / k). 1.0 = as many weights as coefficients.
    expansion: float = 1.0
    ternary_density: float = 1.0 / 3.0  # stored as a byte: round(density * 256)
    offset: bool = True  # random-subspace form (theta0 = SIREN init) vs pure PRANC form


@dataclass(frozen=True)
class FitConfig:
    """Gradient descent on alpha over pixel minibatches."""

    steps: int = 3000
    qat_steps: int = 200  # straight-through fine-tune on quantized alpha
    batch_pixels: int = 4096  # per step, spread evenly over the tiles
    lr: float = 0.1
    qat_lr: float = 1e-3
    warmup_steps: int = 50
    final_lr: float = 0.05  # the cosine schedule ends at this fraction of lr
    # Learning-rate multiplier of the input layer's coefficients: a step there moves
    # every sine's phase by omega0 x the weight change; 1.0 -> 0.03 gave +0.3 dB at
    # 0.125 bpp and +2.2 to +3.2 dB at 1 bpp (ABLATIONS.md I).
    first_layer_lr: float = 0.03
    last_layer_lr: float = 1.0  # the same for the linear head's coefficients
    # divergence guard (fit.py): restart from the best checkpoint at half the rate
    diverge_factor: float = 3.0  # smoothed loss over its best value that counts as divergence
    checkpoint_every: int = 25  # steps between best-alpha checkpoints
    max_restarts: int = 3
    seed: int = 0  # minibatch sampling only: does not affect decodability
    # CPU threads of the encode. 0, the default: a fit runs on one torch thread and a large picture's strips are
    # fitted side by side on every core, in child processes of one thread each (split.py). N: a fit on N threads,
    # N strips at a time. One thread a fit, because on the 2-core AMD EPYC a Kodak fit's step took 6.2 / 6.0 ms on
    # one thread and 7.2 / 6.4 on two at 0.25 bpp (8.3 / 8.4 against 7.8 / 7.4 at 1 bpp), whole encodes the same
    # within the machine's drift, and beside one busy process an encode on both cores took 175 s where one on one
    # thread took 45 (OpenMP's threads wait spinning for the one that lost its core; ABLATIONS.md BK1). It also
    # makes the file the same whatever the core count.
    threads: int = 0


@dataclass(frozen=True)
class GridConfig:
    """The latent-grid network (latent.py) and its rate-distortion fit (grid_fit.py)."""

    levels: int = 7  # latent grids, full resolution down to 1/64
    hidden: int = 32  # MLP width (at most; see mlp_share)
    min_hidden: int = 4
    # The MLP's coded size (num_params x mlp_bits_estimate) may take at most this
    # share of the bit budget; small pictures get a narrower MLP (a 40x56 image at
    # 2 bpp has 4,480 bits, while the 1,411-weight default MLP alone takes ~11,000).
    # 0.25 -> 0.125 (with ste_lam 2, since removed): width 22 instead of 32 at 0.125 bpp on Kodak, +0.11 dB at
    # equal rate, 27 s instead of 30 s; unchanged from ~0.23 bpp up (ABLATIONS.md Q7-Q9).
    # (0.11 at 7 estimated bits a weight is the 0.125 at 8 that Q7-Q9 measured: the same widths on Kodak)
    mlp_share: float = 0.11
    hidden_layers: int = 2
    # Half the pixels a step and 42 % more steps in about the same time: a step's fixed costs (Adam,
    # noise and rate term over all ~524k latents) stay, the MLP's halve. At equal rate on Kodak's 24:
    # +0.01 / +0.06 / +0.08 / +0.09 dB at 0.125 / 0.25 / 0.5 / 1 bpp (ABLATIONS.md R3). Was 2400 x 16384
    # (1600 x 16384: -0.14 / -0.22 dB, K10); 3400 x 4096 was faster but -0.11 dB at 0.5 bpp (R4).
    # 3400 -> 4100 when a step got 17 % cheaper (session 16: the code length in cache-sized chunks, one
    # row gather a step): side by side, the old time (1.00-1.02x), and +0.04 / +0.08 / +0.08 / +0.15 dB
    # on eight images (ABLATIONS.md U1). 4100 -> 3500 with a fourth rounding sweep (RoundingConfig.sweeps): at
    # equal rate on 32 fits, +0.002 dB (17 of 32 ahead) and MS-SSIM +0.0003 (23 of 32) in 0.93-0.96x the time
    # (ABLATIONS.md BL4c).
    steps: int = 3500
    batch_pixels: int = 8192  # pixels a step at batch_ref_pixels and below (grid_fit.batch_size)
    # Larger pictures take batch_pixels x (pixels / batch_ref_pixels) ^ batch_growth a step. A step's fixed
    # costs (Adam, the noise and the rate term over every latent) grow with the picture while its MLP cost
    # grows with the batch, so more pixels a step cost less and less there; at a fixed batch each latent sees
    # ever fewer gradients (5 visits a pixel at 3072 x 2048 against 85 on Kodak). At equal rate, on mosaics of
    # Kodak pictures at 0.125-1 bpp: +0.06 to +0.57 dB at 1536 x 1024, +0.32 to +0.96 dB at 3072 x 2048, for
    # 11-36 % more time; the area ratio itself (16x at 3072 x 2048) bought 0.1 dB more for twice the time
    # (ABLATIONS.md AD). Kodak's 768 x 512 is the reference: its files do not change.
    batch_ref_pixels: int = 768 * 512
    batch_growth: float = 0.5
    # The finest level holds three quarters of the latents, and at low rates the fit leaves it nearly
    # empty (0 bits in 3 of 4 Kodak files at 0.25 bpp) while Adam, the noise and the rate term still
    # run over it. Below finest_min_bpp of latents it stays zero (free in the file) and out of the fit:
    # a CPU step then costs less (55 % as much on the Intel machine of session 15, 73-78 % on the AMD one of
    # session 41), so the same time buys coarse_step_factor x the steps (not on CUDA, where the step is
    # launch-bound: grid_codec.fit_settings).
    # On Kodak's 24 at equal rate and time: +0.19 / +0.20 dB at 0.125 / 0.25 bpp with the changes to the
    # straight-through phase below. Leaving it out gained +0.23 / +0.17 dB at 0.27 / 0.32 bpp of latents
    # and lost 0.23 dB at 0.46 (Kodak's 0.5 bpp); 0.35 is short of the crossover (ABLATIONS.md T1, T9).
    finest_min_bpp: float = 0.35
    # Synthetic pictures (screenshots, charts, diagrams, slides) keep the finest level from finest_min_bpp_flat on:
    # their error sits on one-pixel edges that a half-resolution grid cannot draw, and the finest latents are zero
    # over the flat areas, so cheap. A picture is synthetic when at least finest_flat_share of its pixels equal
    # their upper and left neighbours in every channel (grid_codec.flat_share; Kodak's: 0.003-0.12, screens and
    # figures 0.86-0.97, a 2x nearest-upscaled icon 0.60, a bicubic-upscaled field 0.22). At 0.25 bpp, seven such
    # 768 x 512 pictures at equal rate: +1.9 to +7.7 dB on five, level on text and a dense scatter plot; at 0.125
    # bpp (0.105 of latents) it won on two of seven and lost 0.35-1.1 dB on three, hence 0.15 (ABLATIONS.md AN1).
    # Only fits of at least finest_flat_min_steps steps on at least finest_flat_min_pixels: in session 35 on a dense
    # drawing of small boxes the fit with the finest level swung (lambda 18-fold up and back) and lost 2-6 dB at
    # 1,500 and 2,500 steps at 128 x 384 to 384 x 512, though it gained 6-9 dB at 4,100; at 128 x 192 it lost 4 dB
    # even there. Pictures of 384 x 512 cut from the screens won at every step count tried (AN2). The fit no longer
    # swings: at 384 x 512 the drawing gained 6-9 dB with 1,350 to 3,500 steps, and the fast preset's 1,350 steps
    # gained 2.8-10 dB on six of nine screens at 0.25 bpp, lost 1.3 dB on a code screenshot (ABLATIONS.md BM).
    finest_flat_share: float = 0.75
    finest_min_bpp_flat: float = 0.15
    finest_flat_min_pixels: int = 384 * 512
    finest_flat_min_steps: int = 1350  # the fast preset's, the fewest measured (4,100 until session 57)
    # 1.82, then 1.72 after session 16's cheaper step (U1), measured on the Intel machine as equal time. On the AMD
    # machine of the Kodak runs since session 21 a step without the finest level costs 0.73-0.78 of one with it
    # (kodim05, one thread: 6.03 / 6.49 ms at 0.125 / 0.25 bpp against 8.29 / 8.42 at 0.5 / 1), so 1.72 gave the
    # low rates 1.26-1.35x the time of the others: Kodak at 0.25 bpp took 62.0 s on average (21 of 24 over a
    # minute) on a day when 0.5 bpp took 52. 1.35: about equal time again, -0.03 / -0.07 dB at equal rate at 0.125
    # / 0.25 bpp on eight images (ABLATIONS.md AU).
    coarse_step_factor: float = 1.35
    lr: float = 0.05  # latents (and their entropy-model scales); 0.1 stalls (ABLATIONS.md K)
    # The entropy-model scales' own learning rate (None: lr). Above 1 bpp the latents learn faster (lr_growth
    # below) but the scales stay at lr_high (grid_codec.fit_settings): at the latents' 0.165 and 0.2 they made a
    # fit fall apart (a 48 x 64 picture at 2.63 bpp: 24.5 dB against 33.4 at 0.08), and at 0.08 the same fits
    # reached 34.1 and 34.5 dB (ABLATIONS.md AH5).
    scale_lr: float | None = None
    # High rates want larger latents sooner: from high_rate_bpp on, the latents learn at
    # lr_high (+0.45 to +0.6 dB on three of four images at 1 bpp, level on the fourth;
    # at 0.125 bpp the same rate collapsed the fit, ABLATIONS.md L13-L14).
    lr_high: float = 0.08
    high_rate_bpp: float = 0.75
    # and ever larger ones above: from lr_growth_bpp on, lr_high x (bpp / lr_growth_bpp)^lr_growth, up to
    # lr_growth_max_bpp. At 0.08 the fits stalled short of their budgets (kodim23 at 4 bpp: 3.13 bpp, 42.6 dB).
    # On four Kodak images at equal rate, the best measured were 0.15 at 2 bpp (+0.31 dB), 0.2 at 3 (+0.78) and
    # 0.2-0.28 at 4 (+1.2); at 1 bpp 0.11-0.15 were level and 0.2 fell apart on two (ABLATIONS.md AH1).
    lr_growth: float = 0.75
    lr_growth_bpp: float = 1.0
    lr_growth_max_bpp: float = 4.0
    mlp_lr: float = 0.01
    # and the MLP at mlp_lr_high: +0.1 dB at 1 bpp on two images, but -0.4 dB on one at
    # 0.25 bpp (ABLATIONS.md N)
    mlp_lr_high: float = 0.02
    final_lr: float = 0.02  # the cosine schedule ends at this fraction of lr (0.005 / 0.08: -0.02 / -0.04 dB, BD3)
    # The first lr_hold of the steps run at the full rate and the cosine decay takes the rest (grid_fit.fit_lr). Over
    # all the steps (0), the rate had fallen to 86 % by a quarter of the fit and to half by its middle, while the
    # picture is mostly there after an eighth (ABLATIONS.md AS). 0.7 on eight Kodak images at equal rate and time:
    # +0.09 / +0.08 / +0.13 / +0.05 dB at 0.125 / 0.25 / 0.5 / 1 bpp, 29 of 32 files ahead, MS-SSIM level; 0.5:
    # +0.04 dB and 0.85: +0.05 at 0.25 and 1 bpp, where 0.7 gave +0.065 (ABLATIONS.md BD1).
    lr_hold: float = 0.7
    # but the decay keeps at least lr_decay_min steps (a fit of at most that many is not held): in 200- and 300-step
    # fits of small test pictures the 60-90 steps left did not settle the rate (a 128 x 96 cutout at 0.75 bpp landed
    # at 0.60, where the plain decay gave 0.76; a noisy 64 x 96 at 1.88 bpp at 1.67). Every fit measured in BD1 (1,350
    # steps and more) keeps its 30 %.
    lr_decay_min: int = 400
    # Last fraction of steps on rounded latents. 0.2 lost 0.33 dB (ABLATIONS.md K7); 0.05 gained
    # 0.13 dB at 0.125 bpp and was level above (S5): the rounded latents grow their rate while
    # lambda is frozen, so a long phase costs.
    ste_frac: float = 0.05
    # and at most this many: the phase wants a length, not a share. 170 did at least as well as any
    # longer phase at 3,400, 6,188, 8,500 and 15,470 steps (ABLATIONS.md S5, T3, T8); of 8,500, 850
    # lost 0.3-0.4 dB against 340 (S3-S4), and of 15,000, 600 overshot the rate by 3-4 % (T6).
    ste_max: int = 170
    # The quantization noise's width at the end of the noisy phase (1: uniform in +-1/2 throughout), narrowing
    # linearly from noise_from of that phase on, so that the MLP and the latents come to the straight-through
    # phase (and the rounding after it) nearer what the decoder will give them. 1 -> 0.5 from half-way, on eight
    # Kodak images at equal rate: +0.07 / +0.08 / +0.08 / +0.06 dB at 0.125 / 0.25 / 0.5 / 1 bpp, 32 of 32 files
    # ahead, MS-SSIM +0.0006, the same time; 0.25 from half-way and 0.5 from the start were level with it in
    # PSNR and behind in MS-SSIM (ABLATIONS.md BC4).
    noise_end: float = 0.5
    noise_from: float = 0.5
    # (A doubled rate weight in this phase below 0.15 bpp of latents, ste_lam, stopped paying once the
    # phase was short: without it +0.04 dB at 0.125 bpp with the rate on target, ABLATIONS.md S6, T.)
    # Adam's second-moment decay for latents and MLP: a finest-level latent sees a distortion gradient about
    # once in 48 steps, and 0.999 averaged its scale over ~20 of them. 0.99: +0.01 / +0.02 / +0.06 / +0.12 dB
    # and +0.0011 / +0.0013 / +0.0037 / +0.0019 MS-SSIM at 0.125 / 0.25 / 0.5 / 1 bpp (29 of 32 files ahead in
    # MS-SSIM); 0.95 traded 0.25-0.35 dB of PSNR for MS-SSIM at 0.5 and 1 bpp (ABLATIONS.md U4-U5).
    adam_beta2: float = 0.99
    rate_every: int = 8  # steps between rate terms (weighted x rate_every) in the noisy phase
    ste_rate_every: int = 8  # the same in the straight-through phase (1: -0.03 to +0.05 dB, 7 s slower; ABLATIONS N)
    # rate term under the coder's context model (means and buckets from the neighbours,
    # ABLATIONS.md N: +0.1 to +0.2 dB at 3-7 % less rate); False: one Laplace per level
    context_rate: bool = True
    # Squared errors weighted per pixel by SSIM's contrast masking (grid_fit.structure_weights):
    # 0 = plain MSE, 1 = the weights alone. 0.7 on eight Kodak images: MS-SSIM +0.0025 / +0.0076
    # at -0.41 / -0.24 dB PSNR (1 / 0.25 bpp); 1.0 lost 1.65 dB at 1 bpp (ABLATIONS.md O).
    # The weights are capped at structure_cap x their mean (a flat patch in a busy picture).
    structure_mix: float = 0.7
    structure_cap: float = 8.0
    context_every: int = 64  # steps between refreshes of the coder's means, buckets and rate (a multiple of both)
    # Starting rate weight: lambda = lam_ref x (bpp / bpp_ref)^(-lam_exponent), the
    # relation measured on Kodak (ABLATIONS.md K); the controller then follows the target.
    lam_ref: float = 2.5e-3
    bpp_ref: float = 0.48
    lam_exponent: float = 1.5
    # lambda controller gain per rate evaluation (0.05 per 4 steps in ABLATIONS.md K9). It integrates the rate's
    # log error, so it lags a rate that keeps falling at fixed lambda as the fit converges: at 1 bpp (the finest
    # level in, each of its latents reached once in ~48 steps) 0.1 held the rate 2-3 % under its budget all fit
    # long; 0.2 halves that lag, level at equal rate on eight Kodak images (ABLATIONS.md X4)
    gain: float = 0.2
    # and never further than this factor from its start. A budget the fit cannot reach winds lambda up e^0.2
    # per rate step without end: a 5 x 7 picture at 4 bpp, whose header alone is over its budget, passed
    # float32's 3.4e38 and the encode failed. 10^12 is far past any wind-up that left a fit worth keeping
    # (L14's collapse: 10^7); the golden encodes are unchanged.
    lam_max_range: float = 1e12
    # Every revive_every steps of the noisy phase, hidden units of the MLP that are zero on the whole batch get
    # fresh inputs (grid_fit.revive_dead_units; 0 = never). Without it 13-19 of the 32 units of the second layer
    # were dead at the end of Kodak fits, and a 4-wide MLP on a 48 x 64 picture lost all but two and with them
    # the colours (18 dB instead of 27 at 1.5 bpp). On Kodak's 24 at equal rate: +0.06 / +0.11 / +0.10 / +0.22 /
    # +0.23 / +0.47 dB at 0.125 / 0.25 / 0.5 / 1 / 2 / 4 bpp, 140 of 144 files ahead, in the same time; every 25
    # steps did no better, and no unit died after half the fit (ABLATIONS.md AI).
    revive_every: int = 100
    # Collapse guard: a fit whose MSE is over half that of the flat mean-colour picture
    # (within 3 dB of it) is redone once at retry_lr_factor x the learning rates, with
    # lambda kept within retry_lam_range of its start. Seen with lr 0.08 at 0.125 bpp:
    # lambda wound up 10^7-fold and every latent died (ABLATIONS.md L14).
    retry_lr_factor: float = 0.5
    retry_lam_range: float = 16.0
    # The retry happens only when the fit's latents also take under collapse_rate_share of their budget, as dead
    # ones do (L14: 14 % of the target). A picture that is merely hard keeps its latents at the budget: a drawing of
    # dense edges at 9 dB (kodim08 through an edge filter, ABLATIONS.md AN4) was redone for the same 9 dB, 74 s in
    # all instead of 44.
    collapse_rate_share: float = 0.5
    # The MLP's weights are quantized with step max|w| / 2^(bits-1) per layer; the
    # encoder picks the bits in this range that minimise MSE + lambda x rate.
    mlp_bits: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12)
    # At each depth the symbols are chosen by GPTQ (quantization.gptq_round): each layer's rounding errors spread
    # over its inputs not yet rounded, weighed on the features of mlp_gptq_rows of the picture's pixels (evenly
    # strided), each layer on what the quantized layers before it give there; the same steps, so the same format.
    # On eight Kodak images at 0.125-1 bpp, the same fits, at equal rate: +0.011 dB (24 of 32 files ahead) and
    # MS-SSIM +0.0002; a third to a half of what any quantizer at these steps could recover (ABLATIONS.md BF6,
    # BH2). 32,768 pixels keep the Gram matrices (33 x 33 at most) well determined: 0.04-0.09 s for three depths
    # of a Kodak picture. 0: plain rounding. damp x the Gram matrix's mean diagonal is added to it.
    mlp_gptq_rows: int = 1 << 15
    mlp_gptq_damp: float = 0.01
    # A hidden unit's rounding errors weighed at each pixel by what they do to the colour there (nothing where its
    # ReLU is off; else the squared norm of the float network's Jacobian from the unit to the colour), a Gram
    # matrix a unit; and each layer's inputs rounded in order of decreasing energy (GPTQ's act-order). On the same
    # 32 fits at equal rate: +0.006 dB (25 of 32 ahead) weighted, +0.004 (21) ordered, +0.011 dB (31 of 32 ahead)
    # and MS-SSIM +0.0002 both, for about 1 s more an encode (ABLATIONS.md BI2).
    mlp_gptq_weighted: bool = True
    mlp_gptq_act_order: bool = True
    # coded bits per MLP weight assumed when budgeting the latents: the encoder's choice at the curve's price
    # codes 4.8-9.7 (mean 7.3) on 32 Kodak fits (ABLATIONS.md X4); 8 left files 1-2 % under target at low rates
    mlp_bits_estimate: float = 7.0
    # The choices made after the fit, the MLP's bits and the loop filter, price a bit at the slope of the
    # codec's own rate-distortion curve (grid_codec.curve_lambda): s dB per doubling of the rate, interpolated
    # in log bpp from the mean Kodak curve of session 17 (26.44 / 28.43 / 30.65 / 33.86 dB at 0.126 / 0.252 /
    # 0.501 / 0.988 bpp: the dB gained over each of its three near-doublings, at their geometric midpoints).
    # The fit's own lambda is 1.8-3.8x lower: it prices the structure-weighted error, 1.25-2.25x below the
    # plain MSE, and (likely) a fit that is step-limited needs less of it to stay within its budget. On eight
    # Kodak images at equal rate: +0.05 / +0.02 / +0.02 / +0.01 dB and 27 of 32 files ahead in MS-SSIM; a file
    # at 0.125 bpp no longer overshoots by 9 % (ABLATIONS.md W1).
    # Past 0.707 bpp the table was held at 3.21 dB, where session 30's mean curve climbs 4.31 dB from 1.006 to
    # 2.060 bpp and 4.51 from 2.060 to 3.971: a bit was priced a quarter to a third too low there, the rounding's
    # first sweep spent 5-7 % over the latents' budget and the later ones pulled only part of it back (kodim05 at
    # 2 bpp: +3.4 %). With those two points (session 31) Kodak's 24 files at 2 bpp land +0.7 % over on average
    # instead of +3.0 %, level at equal rate at 1, 2 and 4 bpp (ABLATIONS.md AJ2, RESULTS.md session 31). Below
    # 0.707 the session-17 figures stay (within 11 % of session 30's), so the files there are unchanged.
    slope_bpp: tuple[float, ...] = (0.177, 0.354, 0.707, 1.440, 2.860)
    slope_db: tuple[float, ...] = (1.99, 2.22, 3.21, 4.31, 4.51)
    seed: int = 0  # initialisation and minibatches (encoder only)

    @property
    def effective_scale_lr(self) -> float:
        """The entropy-model scales' learning rate: ``scale_lr``, or ``lr`` when that is unset."""
        return self.lr if self.scale_lr is None else self.scale_lr


@dataclass(frozen=True)
class FilterConfig:
    """The loop filter on the decoded picture (loop_filter.py, format version 6): the encoder fits every
    shape and shift below by least squares and keeps the one (or none) with the least MSE + lambda x bits.

    On eight Kodak images at equal rate: +0.05 / +0.06 / +0.15 / +0.29 dB at 0.125 / 0.25 / 0.5 / 1 bpp, MS-SSIM
    level, 30 of 32 files ahead, for 3-7 % more encode time (ABLATIONS.md V1). 9 x 9 filters, a ridge on the
    least squares, weights for MS-SSIM and separate models for the coefficients gave nothing (V2-V4)."""

    enabled: bool = True
    taps: tuple[int, ...] = (3, 5, 7)  # filter sides tried
    symmetric: tuple[bool, ...] = (True, False)  # point-symmetric (about half the coefficients) or not
    # Coefficient precisions tried, 2^-shift. The coefficients are rounded by GPTQ (quantization.gptq_round) on the
    # least squares' own Gram matrix: a neighbourhood's features are nearly equal, so plain rounding's errors add up
    # across them and a coarse filter lost most of its gain (a 7 x 7 filter at shift 6 gave up 79 of its MSE
    # gain's units where GPTQ gave up 0.13, tests/test_loop_filter.py), and the choice had settled on 10 or 12
    # bits of fraction. With GPTQ, coarse shifts keep the filter and cost fewer bits: with 4-7 added, on eight
    # Kodak images at four rates, the same fits, at equal rate +0.021 dB (32 of 32 files ahead) (ABLATIONS.md BH3).
    shifts: tuple[int, ...] = (4, 5, 6, 7, 8, 10, 12)
    gptq: bool = True  # False: each coefficient rounded on its own (the filters before session 52)
    # Bits the latents' budget leaves for the filter: the expected size of the one chosen, reserve_scale x the
    # square root of the budget's bits (the chosen filters took 700 / 1,240 / 2,150 / 2,600 bits on average at
    # 49 k / 98 k / 197 k / 393 k bits, ABLATIONS.md X4), at most reserve_share of the budget (a small
    # picture's budget is not eaten by a filter it will not get)
    reserve_scale: float = 4.0
    reserve_share: float = 0.05
    # A filter is kept only if the file stays within target x (1 + max_overshoot), inside the rate's promised
    # tolerance (RateConfig.tolerance, 10 %) by an estimate's margin: it is chosen last, when the latents and the
    # MLP have spent what they will, and on a small picture it can be a large part of the file (a 256 x 256
    # graphic at 0.25 bpp: a 1,096-bit filter took its file to 12 % over, RESULTS.md "content"). Not lower: a
    # 64 x 48 grating at 3 bpp keeps its filter at 7 % over for +2.3 dB. Kodak's files land at most 4.3 % over.
    max_overshoot: float = 0.09


@dataclass(frozen=True)
class RoundingConfig:
    """Rate-distortion optimised rounding of the latents after the fit (rounding.py): each latent may move by
    one of ``deltas`` (or to its predicted mean) where that lowers the fit's error + lambda x bits.

    On 32 fits (eight Kodak images at four rates), three sweeps at equal rate: +0.24 / +0.37 / +0.57 / +0.77 dB
    and +0.0045 / +0.0051 / +0.0029 / +0.0024 MS-SSIM at 0.125 / 0.25 / 0.5 / 1 bpp, every file ahead in both,
    for about 5 s (ABLATIONS.md Z1-Z3)."""

    # Passes over all latents in the coder's order; 0 = plain rounding (2: +0.47 dB, 3: +0.49). At the margin a
    # sweep buys more than its time in fitting steps: 4 sweeps and 3,500 steps against 3 and 4,100 at equal rate,
    # +0.002 dB and +0.0003 MS-SSIM in 5 % less time; 2 and 4,450: -0.036 dB (ABLATIONS.md BL4).
    sweeps: int = 4
    # Levels from this one up (1/32 and 1/64 of the picture's side) keep the fit's rounding. Every sublattice
    # costs an MLP pass over every pixel whatever its size, and these two hold 480 of Kodak's 131,000 coded
    # latents at 0.25 bpp: on 16 fits (kodim01, 07, 15, 21 at 0.125-1 bpp), +0.002 dB at equal rate (5 of 11
    # ahead) in 74 % of the rounding's time; from level 4 up, -0.014 dB in 62 % (ABLATIONS.md AW). On all 24 Kodak
    # images at four rates, -0.008 dB at equal rate, MS-SSIM level, 2-4 s faster (RESULTS.md session 42).
    coarsest: int = 5
    deltas: tuple[int, ...] = (-1, 1)
    to_mean: bool = False  # also try the value the coder predicts (a zero symbol): the same files, 40 % slower
    toward_mean: bool = False  # also try one step toward the predicted value (alone: trim_toward)
    chunk: int = 1 << 15  # pixels per MLP evaluation (cache-sized)
    # The fit's rate control put the latents' code length at their budget; the curve's lambda alone moved it by
    # -27 % to +9 % at 0.125 bpp. Between sweeps lambda is rescaled by (bits / the bits held)^(1 / rate_elasticity),
    # at most max_lam_step-fold: with three sweeps the files land within -1.5 % / +5.3 % of their targets.
    hold_rate: bool = True
    # Hold the latents' budget (grid_codec.latent_budget x pixels) rather than the code length the fit ended at:
    # the fit's controller stops at the straight-through phase, which then moves the rate a few per cent either
    # way (3072 x 2048 at 1 bpp: 5.4 % under). On 32 Kodak fits the files' mean |rate error| went 1.4 -> 1.0 %,
    # level at equal rate (-0.003 dB); at 3072 x 2048, 0.9456 -> 0.9943 bpp at 1 bpp (ABLATIONS.md AD3).
    aim_budget: bool = True
    rate_elasticity: float = 0.3
    max_lam_step: float = 4.0
    # Rails on the latents' code length in the last sweep, as a share of the bits held: a sublattice whose moves
    # would take it past target x (1 +- rate_rail) moves at the lambda that stops at the rail (never further past
    # than the latents already are). The rescaling between sweeps alone let pictures unlike Kodak swing: noise
    # (kodim15 + sigma 8) went 373,711 -> 178,091 -> 297,151 -> 480,877 bits over three sweeps against a budget
    # of 380,443, a file 26 % over its 1 bpp target (RESULTS.md "content"). Rails in every sweep held it, but
    # held Kodak's 0.125 bpp files at their lower rail, 2-4 % under; a last sweep that must bring an excess
    # back cost kodim16 0.07 dB at 0.125 bpp, where the rescaling alone brings its +20 % back (ABLATIONS.md
    # AL1). 0 = none.
    rate_rail: float = 0.04
    # The MLP refitted to the moved latents before each later sweep and after the last (Adam on minibatches, the
    # latents held, grid_fit.refit_mlp), quantized as the file will hold it before each later sweep, so that every
    # sweep prices against the decoder's MLP: +0.05 dB at equal rate on 16 fits (16 of 16 ahead), +0.056 dB on all
    # 24 Kodak images at four rates (94 of 96 ahead), for 1.5-3.5 s (ABLATIONS.md AA2, RESULTS.md session 22).
    mlp_steps: int = 200  # 0 = the fit's MLP throughout
    mlp_lr: float = 3e-3
    mlp_batch: int = 8192
    # A file over its ceiling (RateConfig.max_bytes) is trimmed by single sweeps from the rounded latents, railed
    # to a goal for their code length (the excess and half of trim_slack under what they take), at lambda x f
    # (the MLP and the filter at lambda): f from 1, raised trim_growth-fold while the file is over, then
    # bisected in log f for the least f that fits, and where that file fits by a smaller filter, on for the
    # least f whose latents meet their goal; a file within trim_slack under the ceiling ends a search, and the
    # file nearest the picture is kept. At most trim_sweeps sweeps (Kodak: ~4 s each with the filter's choice,
    # the pack and a decode; grid_codec.trim_to_ceiling, trim_search).
    trim_sweeps: int = 8
    trim_growth: float = 2.0
    trim_slack: float = 0.01
    # The trim's sweeps try one step toward each latent's predicted value alone (a cut), not deltas: half the
    # MLP passes a sweep, and no move that adds bits to spend against the cuts. kodim05 under a ceiling at its
    # 0.25 bpp target, no margin: 1 sweep, 23.74 dB at 12,268 bytes, against 4 sweeps, 23.70 dB at 12,166
    # (ABLATIONS.md AM2).
    trim_toward: bool = True


@dataclass(frozen=True)
class TimeConfig:
    """A time budget for each picture's encode (``pranc encode --time``, time_budget.py): the fit's steps and the
    rounding's sweeps are cut to what the deadline leaves, as measured while the picture encodes; never more than
    the preset's."""

    limit: float | None = None  # seconds for a picture's encode; None: the preset's work
    spent: float = 0.0  # seconds of the limit gone before the encode began (the command line's start-up)
    # The fit's step count is planned at first_check steps, again at twice as many, and at the last step at which
    # the schedule does not yet depend on the count (grid_fit.fixed_until); steps are timed from warm_steps on
    # (the first allocate)
    first_check: int = 128
    warm_steps: int = 16
    min_steps: int = 600  # the fewest a budget plans (the fast preset's 1,350 was the fewest measured for quality)
    # Planned steps below this take few_sweeps rounding sweeps (the fast preset's split, 1,350 and 2: the third
    # sweep bought less than 250 steps there, ABLATIONS.md AE2), at or above it the preset's (4 with 3,500, BL4).
    few_sweeps_below: int = 2000
    few_sweeps: int = 2
    # The time after the fit, in fitting steps of the full model (a fit without the finest level takes
    # GridConfig.coarse_step_factor of its steps in that time) x (pixels / ref_pixels) ^ size_exponent: from the
    # fit's end to the rounding's first sweep (pass_steps: the rounded latents' features and errors), its first
    # sweep (first_sweep_steps), each later sweep with the MLP refit before it (sweep_steps), and what follows
    # the last sweep (tail_steps: the final MLP refit, the MLP's bit depth, the loop filter, the file's
    # measurement). Measured on 16 Kodak encodes under a 20 s budget, two at a time (ABLATIONS.md BP1-BP3),
    # medians (most): 16 (19), 159 (275), 337 (479) and 355 (453) steps; a later sweep took 2.0-2.6 x the first,
    # the tail 0.8-1.3 x a later sweep. Set near the three-quarter marks, the tail at 1.05 x a later sweep, so that
    # with two sweeps it is 1,010 steps (measured: 736-1,088). Session 59's 150 / 200 / 420 / 700 (BO1) were
    # sized two at a time while numpy's BLAS ran on both cores in each encode (BP2), and left a fifth of an
    # encode's time unused alone.
    pass_steps: float = 20.0
    first_sweep_steps: float = 170.0
    sweep_steps: float = 400.0
    tail_steps: float = 420.0
    ref_pixels: int = 768 * 512
    size_exponent: float = 0.4
    margin: float = 0.05  # the share of the time left that a plan keeps in hand (the machine's speed drifts)
    # the share of a large picture's time (split.py) its strips' encodes get, each round of strips side by side an
    # equal part; the rest starts their processes, filters the seams and measures the file
    strips_share: float = 0.85


@dataclass(frozen=True)
class QuantConfig:
    """How the quantization step is shaped across coefficient groups (quantization.py)."""

    per_group_steps: bool = True  # steps from measured per-group sensitivity; False = one step
    probe_step: float = 0.02  # width of the noise used to measure sensitivity (alpha units)
    probe_pixels: int = 65536  # pixels the sensitivity is measured on


@dataclass(frozen=True)
class RateConfig:
    """Rate control: how the bit budget is split between coefficient count and precision."""

    bpp: float = 0.25
    bits_per_coef: float = 5.0  # expected coded bits per coefficient, sets k from the budget
    tolerance: float = 0.10  # written size must be within +-10 % of the target
    min_coefs: int = 64
    # A ceiling on the file's size (bytes; pranc encode --max-size), None for none; grid model only. A capped
    # encode aims cap_margin under it (Kodak's files land -1.5 to +4.5 % about their target, pictures unlike
    # Kodak's up to +7 %, RESULTS.md "content"), and a file still over is trimmed by the rounding until it fits
    # (grid_codec.trim_to_ceiling; RoundingConfig.trim_sweeps).
    max_bytes: int | None = None
    cap_margin: float = 0.03


LOSSLESS_MODES = ("auto", "never", "always")


@dataclass(frozen=True)
class LosslessConfig:
    """Version 9 files (lossless.py): the picture, or the picture reduced to a palette, as WebP lossless instead
    of a network.

    mode "auto" stores a picture losslessly wherever its lossless file is no larger than the rate asked for (or
    than --max-size): exact pixels for fewer bits. That is a screen, a chart or a diagram, rarely anything else:
    four of seven screens of the content set code exactly below 0.25 bpp, Kodak's photographs need 7.3-12.2 bpp
    (RESULTS.md "synthetic"). "never" always fits a network (no version 9 file at all, palette files included);
    "always" codes every picture losslessly.
    """

    mode: str = "auto"
    # the screen, libwebp's low effort: 0.01-0.12 s on a 768x512 picture, within 1.8x of the best size on the
    # content set; the full effort is tried only where the screen is within screen_ratio of the budget
    screen_method: int = 2
    screen_quality: int = 50
    screen_ratio: float = 2.0
    # the full effort: method 4 gave the same sizes as method 6 on the content set's six screens in 0.02-0.08 s
    # (method 6: up to 1 s); 0.4-0.8 s on a photograph that passes the screen
    method: int = 4
    quality: int = 100
    # Palette files (mode "auto"): an RGB picture whose palette_colours most common colours cover palette_min_share
    # of its pixels (screens and charts 0.946-1.0, Kodak's photographs 0.105-0.601; RESULTS.md "Palette files") is
    # also coded reduced to the most colours whose WebP lossless file fits the rate (median cut, the number
    # bisected, then refined by k-means), and that file is kept where it beats the network's in PSNR and (in colour)
    # MS-SSIM.
    palette: bool = True
    palette_colours: int = 256  # the most a palette may hold (a VP8L colour-indexing transform's limit)
    # 0.9 left out the graphic (0.82), whose palette file beats the network's at 1 bpp by 3.5 dB (ABLATIONS AP3);
    # Kodak's most is 0.601, the smooth field's 0.62
    palette_min_share: float = 0.75
    # A grey picture has at most 256 levels, so its share is of its palette_grey_levels most common levels: grey
    # screens and charts 0.93-0.997, Kodak's 24 in grey 0.09-0.66, the upscaled icon 0.55 (ABLATIONS.md AQ1)
    palette_grey_levels: int = 16
    palette_kmeans: int = 3  # Pillow's k-means refinements of the median-cut palette (0.1-0.4 s each try)
    palette_refine_tries: int = 3
    # A palette file at least this close to the picture (PSNR, dB) is written without fitting a network, which
    # would take a minute to lose: on the content set's eight such files the network's was 11-39 dB behind
    # (ABLATIONS.md AP5)
    palette_final_db: float = 50.0


@dataclass(frozen=True)
class SplitConfig:
    """A large photograph coded as side-by-side strips of columns, each fitted by its own network in its own process
    (split.py; a composite file, format version 10). On mosaics of Kodak pictures from 1536 x 1024 to 3840 x 3072
    at 0.125-1 bpp, two strips on two cores took 0.66-0.77 x the whole picture's encode time and gained 0.06-0.64
    dB (ABLATIONS.md AZ)."""

    enabled: bool = True
    # pictures of fewer pixels are fitted whole: a second network's weights (about 1,400) would weigh more, and at
    # 1536 x 1024 (1.57 megapixels) two strips already gained 0.10-0.64 dB in 0.66-0.77 x the time (ABLATIONS.md AZ)
    min_pixels: int = 1_500_000
    # One strip per strip_bits of the file's budget, at least min_strips and at most max_strips: set by the
    # picture and the rate, not by the machine's cores, since the file must not depend on the machine that made
    # it. Four strips rather than two gained 0.08-0.40 dB at 3072 x 2048 and 3840 x 3072 at 0.25 bpp (393-737 k
    # bits a strip) in the same time on two cores, and lost 0.11-0.12 dB on smooth 3072 x 2048 pictures at 0.1 bpp
    # (157 k bits a strip) (ABLATIONS.md BA4); eight rather than four gained 0.055-0.45 dB at 368-393 k bits a
    # strip in 1.02-1.07 x the time on two cores (BB4). A machine with more cores fits more of them at once.
    strip_bits: float = 300_000.0
    # and no more strips than of this many pixels each: AZ and BA measured strips of 0.79 megapixels and more
    # (Kodak's size, 0.39, halved gained nothing, BA1)
    strip_pixels: int = 750_000
    min_strips: int = 2  # and the count min_strips times a power of two: whole rounds on 2, 4 or 8 cores
    max_strips: int = 8
    align: int = 64  # strip widths are multiples of the coarsest latent level's pixels
    proxy_quality: int = 50  # the JPEG quality whose sizes share the rate out between the strips
    max_ratio: float = 2.0  # a strip's rate stays within this factor of the picture's mean rate
    # Each strip's fit samples its area's share of the whole picture's batch (grid_fit.batch_size): the whole
    # fit's work, shared out. Else each strip's batch grows with its own pixels, more work in all.
    share_batch: bool = True


@dataclass(frozen=True)
class CompositeConfig:
    """Composite files (format version 10, composite.py): a screen with photographs in it, stored as the screen
    exactly (WebP lossless, the photographs' rectangles filled with one colour) and each photograph as a network
    file of its own, where no exact file of the whole fits the rate. The whole picture's network is fitted too,
    and the composite file kept where it is no worse in PSNR and MS-SSIM (ABLATIONS.md AQ3).

    A photograph is found as a group of busy blocks: block x block squares with more than busy_colours distinct
    colours, which 0-4 % of a screen's or chart's 8 x 8 blocks are, 8-24 % of pages with photographs over 8-24 %
    of them, 40-100 % of Kodak's (ABLATIONS.md AQ3).
    """

    enabled: bool = True  # with --lossless auto (its base is a version 9 file, which "never" rules out)
    block: int = 8  # pixels a side of the blocks whose colours are counted
    busy_colours: int = 32  # a block with more distinct colours than this is busy (of 64 in an 8 x 8 block)
    min_side: int = 32  # pixels: a smaller group of busy blocks is a glyph or a marker, not a photograph
    min_density: float = 0.5  # the share of busy blocks in a group's bounding box
    max_share: float = 0.5  # regions covering more of the picture: a photograph, coded whole
    max_regions: int = 4  # each is one network fit (about 20 s); more groups are merged into their bounding box
    # a box's outer row or column at least this share of whose pixels have colours found outside the boxes is
    # screen, and trimmed off: 22 of 24 Kodak pictures pasted into a page come out to the pixel (ABLATIONS AQ5)
    screen_share: float = 0.9
    # busy blocks outside the regions: screens 0-4 %, Kodak's 40-100 % (a photograph's detail is not a region)
    max_busy_outside: float = 0.1
    min_region_bpp: float = 0.25  # the regions' rate (bits per region pixel) below which no composite is made
    # of a picture with transparency, the share of the pixels outside the regions that must be seen (alpha not 0)
    # for a composite to be tried: a photograph cut out on nothing has no screen to code exactly (a cut-out's
    # 0.003 tried and lost, in 35-40 s more; an icon's 0.605 won, ABLATIONS.md AR4)
    min_screen_seen: float = 0.5


@dataclass(frozen=True)
class AlphaConfig:
    """Pictures with transparency (format version 11, alpha.py): the alpha is stored as a one-channel WebP
    lossless file, exact where the colour is, else reduced to the fewest grey levels that keep it within
    ``min_db`` (ABLATIONS.md AR3), and the colour's file gets the rate it leaves."""

    # the alpha's PSNR (over the whole picture) a reduced alpha keeps: its edge pixels within about 1-7 levels of
    # 255 RMS on the pictures of AR3; inf: the alpha always exact (``pranc encode --alpha exact``)
    min_db: float = 50.0
    levels: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # grey levels tried, fewest first

    # the colour's rate (bits per pixel of the picture) where the alpha leaves less: the file is then over the
    # rate asked for, with a warning (a file of fewer bits would be all one colour)
    min_colour_bpp: float = 0.02


@dataclass(frozen=True)
class MetadataConfig:
    """A picture's ICC profile, EXIF and XMP (format version 12, metadata.py): their bytes come out of the rate
    asked for, as an alpha's do."""

    # the picture's rate (bits per pixel) where the metadata leaves less: the file is then over the rate asked for,
    # with a warning (a file of fewer bits would be all one colour)
    min_picture_bpp: float = 0.02
    # a file whose metadata takes more than this share of it says so, and how to drop it (``--metadata none``)
    warn_share: float = 0.1


@dataclass(frozen=True)
class QualityConfig:
    """A PSNR target instead of a rate (``pranc encode --psnr``; quality_target.py): whole encodes at rates
    found by search, as cwebp's ``-psnr`` does. The first rate comes from the picture itself: the rate at which
    Pillow's JPEG reaches the target (a few millisecond encodes), times this codec's measured rate ratio to
    JPEG at equal PSNR. Later rates step along the codec's curve from the encodes made so far."""

    tolerance_db: float = 0.2  # an encode within this of the target ends the search
    max_passes: int = 3  # whole encodes at most; then the one nearest the target is kept
    # The codec's rate over JPEG's at equal PSNR, per picture, as a function of the codec's rate (bpp): the
    # means over Kodak's 24 in session 30's run (eval/results-s30/per_image.csv, the default preset and tune;
    # one picture's log2 ratio scatters by 0.16 about it, so a first encode lands within about 0.3 dB).
    # Session 27's run gave 0.40 / 0.55 / 0.68 / 0.71 by the same measure (ABLATIONS.md AI).
    jpeg_ratio_bpp: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    jpeg_ratio: tuple[float, ...] = (0.39, 0.54, 0.66, 0.68)
    # Pillow JPEG qualities bisected to bracket the target (quality 1 and 95 are the ends of JPEG's range)
    jpeg_quality_range: tuple[int, int] = (1, 95)
    max_doublings: float = 2.0  # the most one step of the search moves the rate, in doublings
    # the secant of two passes is trusted within this factor of the mean curve's slope (which one picture's local
    # slope follows within +-17 %, 1.07 x on average; at 2 bpp kodim08's was 1.8 x: ABLATIONS.md AG1)
    secant_range: float = 4.0
    bpp_range: tuple[float, float] = (0.01, 8.0)  # the rates the search may ask for


PRESETS: dict[str, dict[str, int]] = {
    # name: FitConfig overrides. "default" is the tuned trade-off.
    "fast": {"steps": 1000, "qat_steps": 100},
    "default": {},
    "slow": {"steps": 8000, "qat_steps": 400},
}
GRID_PRESETS: dict[str, dict[str, int | float]] = {  # GridConfig overrides of the same presets
    # measured as set here on eight Kodak images (ABLATIONS.md S2, T5, T8, AE2); fast keeps the 0.1 it was
    # measured with
    "fast": {"steps": 1350, "ste_frac": 0.1},
    "default": {},
    "slow": {"steps": 8500},
}
ROUNDING_PRESETS: dict[str, dict[str, int]] = {  # RoundingConfig overrides of the same presets
    # fast: the third sweep (about 2.4 s with its MLP refit) buys more as 250 fitting steps (ABLATIONS.md AE2)
    "fast": {"sweeps": 2},
    "default": {},
    "slow": {},
}

TUNES: dict[str, dict[str, float]] = {  # GridConfig overrides: what the grid model's fit minimises
    # "balanced": each pixel's squared error weighted by how much MS-SSIM would notice it, mixed with plain MSE
    # (grid.structure_mix; ABLATIONS.md O): the best MS-SSIM, at some PSNR. "psnr": plain MSE, the most PSNR
    # per bit (ABLATIONS.md Y1)
    "balanced": {},
    "psnr": {"structure_mix": 0.0},
}


@dataclass(frozen=True)
class CodecConfig:
    """Everything the encoder needs. ``seed`` is recorded in the header."""

    rate: RateConfig = field(default_factory=RateConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    basis: BasisConfig = field(default_factory=BasisConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    rounding: RoundingConfig = field(default_factory=RoundingConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    lossless: LosslessConfig = field(default_factory=LosslessConfig)
    composite: CompositeConfig = field(default_factory=CompositeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    alpha: AlphaConfig = field(default_factory=AlphaConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    # "grid": latent grids + MLP (format v8, the default); "siren": the PRANC SIREN (format v3)
    model: str = "grid"
    seed: int = 2023
    device: str = "auto"  # auto | cpu | cuda
    width: int | None = None  # force the hidden width instead of deriving it from bpp

    def with_preset(self, name: str) -> "CodecConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return replace(self, fit=replace(self.fit, **PRESETS[name]), grid=replace(self.grid, **GRID_PRESETS[name]),
                       rounding=replace(self.rounding, **ROUNDING_PRESETS[name]))

    def with_tune(self, name: str) -> "CodecConfig":
        """The grid model's fit aimed at one metric (``TUNES``); the siren model ignores it."""
        if name not in TUNES:
            raise ValueError(f"unknown tune {name!r}; choose from {', '.join(TUNES)}")
        return replace(self, grid=replace(self.grid, **TUNES[name]))


def apply_overrides(config: CodecConfig, assignments: list[str]) -> CodecConfig:
    """Apply ``section.field=value`` strings (e.g. ``fit.lr=0.1``, ``basis.kind=TERNARY``).

    Top-level fields (``seed``, ``width``) take no section. Values are parsed to the
    type of the field they replace; enums take member names.
    """
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form section.field=value")
        parts = key.strip().split(".")
        if len(parts) > 2 or (len(parts) == 2 and not hasattr(config, parts[0])):
            raise ValueError(f"unknown setting {key!r}")
        owner = config if len(parts) == 1 else getattr(config, parts[0])
        declared = _declared(owner, parts[-1])
        if not declared:  # not a field (a property such as effective_scale_lr, or nothing)
            raise ValueError(f"unknown setting {key!r}")
        changed = replace(owner, **{parts[-1]: _parse(getattr(owner, parts[-1]), raw, key, declared)})
        config = changed if len(parts) == 1 else replace(config, **{parts[0]: changed})
    return config


def _declared(obj: object, name: str) -> str:
    """The type a dataclass declares for its field ``name``, as written (e.g. ``"float | None"``); "" if none."""
    return next((str(f.type) for f in fields(obj) if f.name == name), "")


def _parse(current: object, raw: str, key: str, declared: str = "") -> object:
    raw = raw.strip()
    try:
        if isinstance(current, IntEnum):
            return type(current)[raw.upper()]
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):  # comma-separated, each parsed as the default's items
            return tuple(_parse(current[0], part, key) for part in raw.split(","))
        if current is None:  # optional fields (width: int | None, grid.scale_lr: float | None)
            return None if raw.lower() == "none" else (float if "float" in declared else int)(raw)
        return raw
    except (KeyError, ValueError):
        raise ValueError(f"bad value {raw!r} for {key}") from None
