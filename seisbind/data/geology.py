"""Random 2-D geologies: a section (depth x distance) with Vp, Vs and density.

A :class:`Geology` is defined by continuous functions of position (layer interfaces,
a fault plane, an intrusive body, a random field), so the same ground can be sampled
on the coarse finite-difference grid of the simulation and on the fine pixel grid of
the section image without one being an interpolation of the other.

Families, as in HEMEWS-3D's random layered geologies and OpenFWI's map families:
``flat``, ``folded``, ``faulted`` (normal or reverse, with dip and throw) and
``intrusion`` (a salt diapir or an igneous stock cutting the layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("flat", "folded", "faulted", "intrusion")

# Salt is the classic exception to velocity-density trends: fast but light.
SALT_VP, SALT_VS, SALT_RHO = 4500.0, 2600.0, 2160.0


def gardner_density(vp: np.ndarray) -> np.ndarray:
    """Gardner et al. (1974): rho = 310 * Vp**0.25, rho in kg/m^3 and Vp in m/s."""
    return 310.0 * np.power(np.asarray(vp, dtype=np.float64), 0.25)


@dataclass
class Fault:
    """A planar fault through the whole section.

    ``x_top`` is where the fault meets the surface; the plane dips at ``dip_deg`` towards
    +x when ``dips_towards_positive_x``. The hanging wall (the block above the plane)
    moved down by ``throw_m`` for a normal fault and up for a reverse fault.
    """

    x_top: float
    dip_deg: float
    throw_m: float
    kind: str  # "normal" or "reverse"
    dips_towards_positive_x: bool = True

    def in_hanging_wall(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        run = z / np.tan(np.radians(self.dip_deg))
        if self.dips_towards_positive_x:
            return x > self.x_top + run
        return x < self.x_top - run

    def source_depth(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Depth the rock now at (x, z) had before faulting."""
        shift = self.throw_m if self.kind == "normal" else -self.throw_m
        return np.where(self.in_hanging_wall(x, z), z - shift, z)


@dataclass
class Body:
    """An intrusive body with its own rock properties.

    ``salt``: a diapir whose top follows ``z_base - height * exp(-((x-xc)/w)^2 / 2)`` and which
    extends to the bottom of the section. ``igneous``: an ellipse centred at (xc, zc).
    """

    kind: str
    xc: float
    width: float
    z_base: float = 0.0
    height: float = 0.0
    zc: float = 0.0
    half_height: float = 0.0
    vp: float = SALT_VP
    vs: float = SALT_VS
    rho: float = SALT_RHO

    def inside(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        if self.kind == "salt":
            top = self.z_base - self.height * np.exp(-0.5 * ((x - self.xc) / self.width) ** 2)
            return z >= top
        return ((x - self.xc) / self.width) ** 2 + ((z - self.zc) / self.half_height) ** 2 <= 1.0


@dataclass
class RandomField:
    """Smooth multiplicative heterogeneity, a sum of random plane waves (a spectral random field).

    Evaluated analytically so it is the same ground at every sampling. ``std`` is the relative
    standard deviation of the velocity perturbation.
    """

    std: float
    kx: np.ndarray
    kz: np.ndarray
    phase: np.ndarray

    def __call__(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        arg = x[..., None] * self.kx + z[..., None] * self.kz + self.phase
        # sqrt(2/N) normalises the sum of N unit cosines to unit variance.
        return self.std * np.sqrt(2.0 / len(self.kx)) * np.cos(arg).sum(-1)


@dataclass
class Geology:
    """A 2-D section of ``depth_m`` x ``width_m``; depth z grows downwards from the free surface.

    Layers are numbered from the top; layer ``i`` lies between interface ``i-1`` and ``i``
    (the last layer is a half-space). ``interfaces`` holds, per interface, the mean depth and
    a fold (amplitude, wavelength, phase).
    """

    family: str
    width_m: float
    depth_m: float
    interface_depth: np.ndarray  # (n_layers - 1,) mean depth of each interface
    fold_amplitude: np.ndarray  # (n_layers - 1,) m
    fold_wavelength: float  # m
    fold_phase: float  # rad
    vp: np.ndarray  # (n_layers,) m/s
    vs: np.ndarray  # (n_layers,) m/s
    rho: np.ndarray  # (n_layers,) kg/m^3
    fault: Fault | None = None
    body: Body | None = None
    field: RandomField | None = None
    vs_bounds: tuple[float, float] = (0.0, np.inf)
    # "gardner": density follows Vp (and so the random field); "layers": use ``rho`` as given.
    density_rule: str = "gardner"

    @property
    def n_layers(self) -> int:
        return len(self.vp)

    def interfaces_at(self, x: np.ndarray) -> np.ndarray:
        """Depth of every interface below each x, shape (n_interfaces, *x.shape), never crossing."""
        fold = np.sin(2 * np.pi * np.asarray(x) / self.fold_wavelength + self.fold_phase)
        z = self.interface_depth.reshape(-1, *([1] * np.ndim(x))) + self.fold_amplitude.reshape(
            -1, *([1] * np.ndim(x))
        ) * fold
        # Folding must not make layers cross: keep each interface at least 1 m below the one above.
        for i in range(1, len(z)):
            z[i] = np.maximum(z[i], z[i - 1] + 1.0)
        return z

    def layer_index(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Index of the layer at each point (x, z), with faulting applied."""
        z_orig = self.fault.source_depth(x, z) if self.fault is not None else z
        tops = self.interfaces_at(x)
        return (z_orig[None] >= tops).sum(0)

    def properties(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vp, Vs (m/s) and density (kg/m^3) at points (x, z) in metres."""
        x, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(z, float))
        idx = self.layer_index(x, z)
        vp, vs = self.vp[idx], self.vs[idx]
        if self.field is not None:
            # Same factor on Vp and Vs keeps each layer's Vp/Vs (and so its Poisson ratio).
            factor = 1.0 + self.field(x, z)
            vp, vs = vp * factor, vs * factor
        rho = gardner_density(vp) if self.density_rule == "gardner" else self.rho[idx]
        if self.body is not None:
            inside = self.body.inside(x, z)
            vp = np.where(inside, self.body.vp, vp)
            vs = np.where(inside, self.body.vs, vs)
            rho = np.where(inside, self.body.rho, rho)
        lo, hi = self.vs_bounds
        scale = np.clip(vs, lo, hi) / np.where(vs > 0, vs, 1.0)
        return vp * scale, vs * scale, rho

    def rasterize(self, nz: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample the section at cell centres of an (nz, nx) grid covering the whole section."""
        z = (np.arange(nz) + 0.5) * self.depth_m / nz
        x = (np.arange(nx) + 0.5) * self.width_m / nx
        zz, xx = np.meshgrid(z, x, indexing="ij")
        vp, vs, rho = self.properties(xx, zz)
        return vp.astype(np.float32), vs.astype(np.float32), rho.astype(np.float32)


@dataclass
class GeologyPrior:
    """Ranges that random geologies are drawn from. Velocities in m/s, lengths in m."""

    width_m: float = 4000.0
    depth_m: float = 2000.0
    n_layers: tuple[int, int] = (3, 8)  # inclusive, the half-space counted
    vs_min: float = 300.0
    vs_max: float = 3500.0
    top_vs: tuple[float, float] = (300.0, 700.0)
    top_thickness: tuple[float, float] = (5.0, 60.0)
    half_space_vs_min: float = 1500.0
    heterogeneity_probability: float = 0.5
    heterogeneity_std: tuple[float, float] = (0.02, 0.06)
    families: tuple[str, ...] = FAMILIES


def _vp_over_vs(vs: float, rng: np.random.Generator) -> float:
    # Unconsolidated near-surface sediments have high Vp/Vs; consolidated rock about 1.7.
    # Both stay above sqrt(2) (positive Lame lambda, Poisson ratio above zero).
    return float(rng.uniform(1.9, 2.4) if vs < 1000.0 else rng.uniform(1.65, 1.95))


def random_geology(rng: np.random.Generator, prior: GeologyPrior, family: str | None = None) -> Geology:
    """Draw one geology of ``family`` (random among ``prior.families`` when None)."""
    family = family or str(rng.choice(prior.families))
    if family not in FAMILIES:
        raise ValueError(f"unknown geology family {family!r}; expected one of {FAMILIES}")
    n = int(rng.integers(prior.n_layers[0], prior.n_layers[1] + 1))
    depth, width = prior.depth_m, prior.width_m

    # Interfaces: a thin top layer (it sets Vs30), the rest spread over the section.
    top = rng.uniform(*prior.top_thickness)
    deeper = np.sort(rng.uniform(top + 20.0, 0.85 * depth, size=n - 2)) if n > 2 else np.array([])
    interface_depth = np.concatenate([[top], deeper])

    # Velocities increase with depth on average, with occasional low-velocity layers.
    vs = np.empty(n)
    vs[0] = rng.uniform(*prior.top_vs)
    for i in range(1, n):
        step = rng.uniform(0.8, 0.95) if rng.random() < 0.15 else rng.uniform(1.1, 1.6)
        vs[i] = vs[i - 1] * step
    vs[-1] = max(vs[-1], prior.half_space_vs_min)
    vs = np.clip(vs, prior.vs_min, prior.vs_max)
    vp = np.array([v * _vp_over_vs(v, rng) for v in vs])
    rho = gardner_density(vp)

    fold_amp = np.zeros(n - 1)
    fold_wavelength, fold_phase = width, 0.0
    if family in ("folded", "faulted", "intrusion"):
        amp = rng.uniform(40.0, 250.0) if family == "folded" else rng.uniform(0.0, 60.0)
        # Folds flatten towards the surface (erosion, younger cover): the top interface barely folds.
        fold_amp = amp * np.linspace(0.1, 1.0, n - 1)
        fold_wavelength = rng.uniform(0.5, 2.0) * width
        fold_phase = rng.uniform(0, 2 * np.pi)

    fault = None
    if family == "faulted":
        fault = Fault(
            x_top=rng.uniform(0.25, 0.75) * width,
            dip_deg=rng.uniform(30.0, 75.0),
            throw_m=rng.uniform(30.0, 300.0),
            kind=str(rng.choice(["normal", "reverse"])),
            dips_towards_positive_x=bool(rng.random() < 0.5),
        )

    body = None
    if family == "intrusion":
        xc = rng.uniform(0.3, 0.7) * width
        if rng.random() < 0.5:
            body = Body(
                kind="salt",
                xc=xc,
                width=rng.uniform(0.05, 0.15) * width,
                z_base=rng.uniform(0.8, 1.0) * depth,
                height=rng.uniform(0.4, 0.7) * depth,
            )
        else:
            bvp = rng.uniform(5200.0, 6000.0)
            bvs = min(bvp / rng.uniform(1.7, 1.8), prior.vs_max)
            body = Body(
                kind="igneous",
                xc=xc,
                width=rng.uniform(0.05, 0.2) * width,
                zc=rng.uniform(0.45, 0.75) * depth,
                half_height=rng.uniform(0.1, 0.25) * depth,
                vp=bvp,
                vs=bvs,
                rho=float(gardner_density(bvp)),
            )

    rf = None
    if rng.random() < prior.heterogeneity_probability:
        n_modes = 64
        corr = rng.uniform(100.0, 600.0)  # correlation length, m
        angle = rng.uniform(0, 2 * np.pi, n_modes)
        # Horizontal correlation longer than vertical, as in sedimentary rock.
        k = np.abs(rng.normal(0.0, 1.0 / corr, n_modes)) + 1e-4
        rf = RandomField(
            std=rng.uniform(*prior.heterogeneity_std),
            kx=k * np.cos(angle) / 3.0,
            kz=k * np.sin(angle),
            phase=rng.uniform(0, 2 * np.pi, n_modes),
        )

    return Geology(
        family=family,
        width_m=width,
        depth_m=depth,
        interface_depth=interface_depth,
        fold_amplitude=fold_amp,
        fold_wavelength=fold_wavelength,
        fold_phase=fold_phase,
        vp=vp,
        vs=vs,
        rho=rho,
        fault=fault,
        body=body,
        field=rf,
        vs_bounds=(prior.vs_min, prior.vs_max),
    )


def layered_geology(
    thicknesses: list[float], vp: list[float], vs: list[float], rho: list[float], width_m: float, depth_m: float
) -> Geology:
    """A flat layered geology with exactly the given properties (for tests and users' own models).

    ``thicknesses`` has one entry per layer above the half-space, so ``len(vp) == len(thicknesses) + 1``.
    Density is taken as given, not from Gardner's relation.
    """
    if not len(vp) == len(vs) == len(rho) == len(thicknesses) + 1:
        raise ValueError(
            f"need one Vp, Vs and rho per layer and one thickness per layer above the half-space; "
            f"got {len(vp)}, {len(vs)}, {len(rho)} properties and {len(thicknesses)} thicknesses"
        )
    return Geology(
        family="flat",
        width_m=width_m,
        depth_m=depth_m,
        interface_depth=np.cumsum(np.asarray(thicknesses, float)),
        fold_amplitude=np.zeros(len(thicknesses)),
        fold_wavelength=width_m,
        fold_phase=0.0,
        vp=np.asarray(vp, float),
        vs=np.asarray(vs, float),
        rho=np.asarray(rho, float),
        density_rule="layers",
    )
