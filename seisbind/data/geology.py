"""Random 2-D geologies: a section (depth x distance) with Vp, Vs and density.

A :class:`Geology` is defined by continuous functions of position (layer interfaces,
a fault plane, an intrusive body, a random field), so the same ground can be sampled
on the coarse finite-difference grid of the simulation and on the fine pixel grid of
the section image without one being an interpolation of the other.

Families, as in HEMEWS-3D's random layered geologies and OpenFWI's map families:
``flat``, ``folded``, ``faulted`` (normal or reverse, with dip and throw) and
``intrusion`` (a salt diapir or an igneous stock cutting the layers).

Those four are templates, and a model trained only on them learns the templates. Real
sedimentary basins add structures that none of them has, so the prior also draws:

``unconformity``
    An angular unconformity: older layers tilted (and sometimes folded), eroded down to a
    gently undulating surface and covered by younger flat layers. The commonest major
    surface in a basin's fill; the section shows reflectors truncated against the surface
    and a velocity jump from the young cover to the older, compacted rock.
``graben``
    A horst-and-graben fault system (rifts, extensional basins): two normal faults that
    either dip towards each other and bound a down-dropped block (graben) or dip away from
    each other with both sides dropped (horst). More than one fault in a section, and
    faults that end against each other at depth, which one planar fault never gives.
``channel``
    Buried channel fills (one to three lenses with a flat top on a palaeo-surface and a
    curved erosive base), faster or slower than the layer they cut: stratigraphic bodies
    a few cells thick, smaller than the whole-section structures of the other families.
``composite``
    No template: a random geological *history*, in the manner of Noddy's kinematic models.
    Flat layers are deposited, then one to four events, drawn with replacement and in
    random order, act on them: tilt (rotation), fold (sinusoidal vertical shear), fault
    (planar, normal or reverse), unconformity (erosion, then new layers) and intrusion
    (salt or igneous). Later events move the products of earlier ones.

The new families are built from *events* (:class:`Tilt`, :class:`Fold`, :class:`Fault`,
:class:`Graben`, :class:`Unconformity`, :class:`Body`) held in ``Geology.events``, oldest
first. A coordinate transform maps today's point back to where that rock was before the
event; an overprint (new deposition, an intrusion) claims the points it covers. Evaluating
a point walks the history back from today, so every family is still a function of (x, z)
that can be sampled on any grid. The new families may also draw a compaction trend (Vp and
Vs rising with burial depth inside each layer sequence, ``Geology.compaction``), which real
sediments have and constant-velocity layers lack. The four template families draw exactly
the random numbers they drew before, so a family requested by name gives the same ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("flat", "folded", "faulted", "intrusion", "unconformity", "graben", "channel", "composite")
# The events a composite history is drawn from.
EVENT_KINDS = ("tilt", "fold", "fault", "unconformity", "intrusion")

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

    def undo(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As a history event: where the rock now at (x, z) was before the fault slipped."""
        return x, self.source_depth(x, z)


@dataclass
class Graben:
    """Two normal faults with the same throw, ``faults`` = (left, right) at the surface.

    ``graben``: the faults dip towards each other and the wedge between them (above the depth
    where they meet) dropped by ``throw_m``. ``horst``: they dip away from each other and both
    outer blocks dropped by ``throw_m``, leaving the middle block high.
    """

    faults: tuple[Fault, Fault]
    kind: str  # "graben" or "horst"

    @property
    def throw_m(self) -> float:
        return self.faults[0].throw_m

    def undo(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        left, right = (f.in_hanging_wall(x, z) for f in self.faults)
        moved = (left & right) if self.kind == "graben" else (left | right)
        return x, np.where(moved, z - self.throw_m, z)


@dataclass
class Tilt:
    """Rigid rotation of all older rock by ``angle_deg`` about (``x_pivot``, ``z_pivot``).

    A positive angle makes horizontal layers dip towards +x (deeper at larger x).
    """

    angle_deg: float
    x_pivot: float
    z_pivot: float

    def undo(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.radians(self.angle_deg)
        dx, dz = x - self.x_pivot, z - self.z_pivot
        # Forward: (dx0, dz0) -> (cos a dx0 - sin a dz0, sin a dx0 + cos a dz0); this is its inverse.
        return self.x_pivot + np.cos(a) * dx + np.sin(a) * dz, self.z_pivot - np.sin(a) * dx + np.cos(a) * dz


@dataclass
class Fold:
    """Sinusoidal vertical-shear fold of all older rock: a level z0 moves to z0 + A sin(2 pi x / L + phase)."""

    amplitude: float
    wavelength: float
    phase: float

    def undo(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x, z - self.amplitude * np.sin(2 * np.pi * x / self.wavelength + self.phase)


@dataclass
class Unconformity:
    """Erosion down to ``depth + relief * sin(2 pi x / wavelength + phase)``, then new flat layers.

    The new (cover) layers are ``first_layer, first_layer + 1, ...`` of the geology's layer
    arrays, separated by the flat ``interfaces`` (depths); the last one fills down to the
    erosion surface, and a deeper cover interface ends against it (onlap).
    """

    depth: float
    relief: float
    wavelength: float
    phase: float
    interfaces: np.ndarray
    first_layer: int

    @property
    def n_cover(self) -> int:
        return len(self.interfaces) + 1

    def surface(self, x: np.ndarray) -> np.ndarray:
        return self.depth + self.relief * np.sin(2 * np.pi * x / self.wavelength + self.phase)

    def claims(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return z < self.surface(x)

    def layer(self, z: np.ndarray) -> np.ndarray:
        return self.first_layer + (z[None] >= np.asarray(self.interfaces).reshape(-1, *([1] * z.ndim))).sum(0)


@dataclass
class Body:
    """An intrusive body with its own rock properties.

    ``salt``: a diapir whose top follows ``z_base - height * exp(-((x-xc)/w)^2 / 2)`` and which
    extends to the bottom of the section. ``igneous``: an ellipse centred at (xc, zc).
    ``channel``: a channel fill with a flat top at depth ``zc`` (the palaeo-surface it was cut
    into) and a parabolic base ``half_height`` below it at ``xc``, ``width`` either side.

    With ``host_layer`` set, the body's rock is that layer's Vp and Vs times ``contrast``
    (density from Gardner), so it follows whatever velocities the layers are given later.
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
    host_layer: int | None = None
    contrast: float = 1.0

    def inside(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        if self.kind == "salt":
            top = self.z_base - self.height * np.exp(-0.5 * ((x - self.xc) / self.width) ** 2)
            return z >= top
        if self.kind == "channel":
            u = (x - self.xc) / self.width
            return (np.abs(u) < 1.0) & (z >= self.zc) & (z <= self.zc + self.half_height * (1.0 - u**2))
        return ((x - self.xc) / self.width) ** 2 + ((z - self.zc) / self.half_height) ** 2 <= 1.0

    def rock(self, geology: "Geology") -> tuple[float, float, float]:
        """Vp, Vs, density of the body in ``geology``."""
        if self.host_layer is None:
            return self.vp, self.vs, self.rho
        host = self.host_layer
        vp, vs = geology._clip_vs(geology.vp[host] * self.contrast, geology.vs[host] * self.contrast)
        return float(vp), float(vs), float(gardner_density(vp))


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

    These interfaces (with ``fault`` and ``body``) make the *base* layer sequence, the last
    ``len(interface_depth) + 1`` entries of the layer arrays. ``events`` (oldest first) then
    act on it: transforms (:class:`Tilt`, :class:`Fold`, :class:`Fault`, :class:`Graben`)
    move older rock, :class:`Unconformity` replaces everything above its erosion surface
    with its own cover layers (the first entries of the layer arrays, youngest on top) and a
    :class:`Body` overprints the rock it occupies. ``compaction`` raises Vp and Vs with the
    depth each layer sequence was buried to (its own frame, before later events), by that
    fraction from its top to the depth of the section.
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
    events: tuple = ()
    compaction: float = 0.0

    @property
    def n_layers(self) -> int:
        return len(self.vp)

    @property
    def faults(self) -> list[Fault]:
        """Every fault in the section, the base one and those of the history."""
        out = [self.fault] if self.fault is not None else []
        for ev in self.events:
            out += [ev] if isinstance(ev, Fault) else list(ev.faults) if isinstance(ev, Graben) else []
        return out

    @property
    def main_fault(self) -> Fault | None:
        """The fault with the largest throw (the first of equals), or None."""
        return max(self.faults, key=lambda f: f.throw_m, default=None)

    @property
    def history(self) -> tuple[str, ...]:
        """Names of the events, oldest first: tilt, fold, fault, graben, unconformity, intrusion, channel."""
        names = {Tilt: "tilt", Fold: "fold", Fault: "fault", Graben: "graben", Unconformity: "unconformity"}
        return tuple(
            ("channel" if ev.kind == "channel" else "intrusion") if isinstance(ev, Body) else names[type(ev)]
            for ev in self.events
        )

    @property
    def bodies(self) -> list[Body]:
        return ([self.body] if self.body is not None else []) + [ev for ev in self.events if isinstance(ev, Body)]

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

    def _base_layer(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base-sequence layer (0 = its top) at (x, z) in the base's own frame, and the depth there."""
        z_orig = self.fault.source_depth(x, z) if self.fault is not None else z
        tops = self.interfaces_at(x)
        return (z_orig[None] >= tops).sum(0), z_orig

    def _trace(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walk the history back from today, for points (x, z) of any (equal) shape.

        Returns the layer index, the depth of the point in its layer sequence's own frame, and
        the index in ``events`` of the body that overprints it (-1 for none).
        """
        x, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(z, float))
        if not self.events:
            idx, z0 = self._base_layer(x, z)
            return idx, z0, np.full(x.shape, -1)
        shape = x.shape
        xs, zs = x.ravel().copy(), z.ravel().copy()
        layer = np.zeros(xs.shape, int)
        depth0 = np.zeros(xs.shape)
        body = np.full(xs.shape, -1)
        open_ = np.ones(xs.shape, bool)  # not yet claimed by younger deposition
        for k in range(len(self.events) - 1, -1, -1):
            ev = self.events[k]
            if isinstance(ev, Unconformity):
                m = open_ & ev.claims(xs, zs)
                layer[m], depth0[m] = ev.layer(zs[m]), zs[m]
                open_ &= ~m
            elif isinstance(ev, Body):
                body[open_ & (body < 0) & ev.inside(xs, zs)] = k  # a younger body wins
            else:
                xs, zs = ev.undo(xs, zs)
        offset = self.n_layers - len(self.interface_depth) - 1
        idx, z0 = self._base_layer(xs[open_], zs[open_])
        layer[open_], depth0[open_] = offset + idx, z0
        return layer.reshape(shape), depth0.reshape(shape), body.reshape(shape)

    def layer_index(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Index of the layer at each point (x, z), with faulting and the history applied.

        Intrusive bodies are not layers: inside one, this is the layer it intruded.
        """
        return self._trace(x, z)[0]

    def _clip_vs(self, vp: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale Vp and Vs together so Vs stays inside ``vs_bounds`` (Vp/Vs unchanged)."""
        lo, hi = self.vs_bounds
        scale = np.clip(vs, lo, hi) / np.where(vs > 0, vs, 1.0)
        return vp * scale, vs * scale

    def properties(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vp, Vs (m/s) and density (kg/m^3) at points (x, z) in metres."""
        x, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(z, float))
        idx, depth0, body_at = self._trace(x, z)
        vp, vs = self.vp[idx], self.vs[idx]
        if self.compaction:
            # Clipped to the bounds before density, so density never follows a Vp the grid won't hold.
            trend = 1.0 + self.compaction * np.clip(depth0 / self.depth_m, 0.0, 1.0)
            vp, vs = self._clip_vs(vp * trend, vs * trend)
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
        for k in np.unique(body_at[body_at >= 0]):
            inside = body_at == k
            bvp, bvs, brho = self.events[k].rock(self)
            vp, vs, rho = np.where(inside, bvp, vp), np.where(inside, bvs, vs), np.where(inside, brho, rho)
        vp, vs = self._clip_vs(vp, vs)
        return vp, vs, rho

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


def _draw_interfaces(rng: np.random.Generator, prior: GeologyPrior, n: int) -> np.ndarray:
    """Mean depths of the n - 1 interfaces of n layers: a thin top layer, the rest spread out."""
    # A thin top layer (it sets Vs30), the rest spread over the section.
    top = rng.uniform(*prior.top_thickness)
    deeper = np.sort(rng.uniform(top + 20.0, 0.85 * prior.depth_m, size=n - 2)) if n > 2 else np.array([])
    return np.concatenate([[top], deeper])


def _draw_velocities(rng: np.random.Generator, prior: GeologyPrior, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vs and Vp of n layers, top (youngest) first."""
    # Velocities increase with depth on average, with occasional low-velocity layers.
    vs = np.empty(n)
    vs[0] = rng.uniform(*prior.top_vs)
    for i in range(1, n):
        step = rng.uniform(0.8, 0.95) if rng.random() < 0.15 else rng.uniform(1.1, 1.6)
        vs[i] = vs[i - 1] * step
    vs[-1] = max(vs[-1], prior.half_space_vs_min)
    vs = np.clip(vs, prior.vs_min, prior.vs_max)
    vp = np.array([v * _vp_over_vs(v, rng) for v in vs])
    return vs, vp


def _draw_fault(rng: np.random.Generator, width: float, throw_m: tuple[float, float], x_top=(0.25, 0.75)) -> Fault:
    return Fault(
        x_top=rng.uniform(*x_top) * width,
        dip_deg=rng.uniform(30.0, 75.0),
        throw_m=rng.uniform(*throw_m),
        kind=str(rng.choice(["normal", "reverse"])),
        dips_towards_positive_x=bool(rng.random() < 0.5),
    )


def _draw_body(rng: np.random.Generator, prior: GeologyPrior) -> Body:
    """A salt diapir or an igneous stock, half and half."""
    width, depth = prior.width_m, prior.depth_m
    xc = rng.uniform(0.3, 0.7) * width
    if rng.random() < 0.5:
        return Body(
            kind="salt",
            xc=xc,
            width=rng.uniform(0.05, 0.15) * width,
            z_base=rng.uniform(0.8, 1.0) * depth,
            height=rng.uniform(0.4, 0.7) * depth,
        )
    bvp = rng.uniform(5200.0, 6000.0)
    bvs = min(bvp / rng.uniform(1.7, 1.8), prior.vs_max)
    return Body(
        kind="igneous",
        xc=xc,
        width=rng.uniform(0.05, 0.2) * width,
        zc=rng.uniform(0.45, 0.75) * depth,
        half_height=rng.uniform(0.1, 0.25) * depth,
        vp=bvp,
        vs=bvs,
        rho=float(gardner_density(bvp)),
    )


def _draw_tilt(rng: np.random.Generator, prior: GeologyPrior, angle_deg: tuple[float, float]) -> Tilt:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    angle = sign * rng.uniform(*angle_deg)
    return Tilt(angle, rng.uniform(0.3, 0.7) * prior.width_m, rng.uniform(0.3, 0.7) * prior.depth_m)


def _draw_fold(rng: np.random.Generator, prior: GeologyPrior, amplitude: tuple[float, float]) -> Fold:
    """``amplitude`` as fractions of the section depth."""
    amp = rng.uniform(*amplitude) * prior.depth_m
    return Fold(amp, rng.uniform(0.4, 2.0) * prior.width_m, rng.uniform(0, 2 * np.pi))


def _draw_unconformity(rng: np.random.Generator, prior: GeologyPrior, first_layer: int, n_cover: int) -> Unconformity:
    depth = rng.uniform(0.15, 0.5) * prior.depth_m
    relief = rng.uniform(0.0, 0.03) * prior.depth_m
    wavelength = rng.uniform(0.3, 1.5) * prior.width_m
    phase = rng.uniform(0, 2 * np.pi)
    interfaces = np.sort(rng.uniform(0.05, 0.95, n_cover - 1)) * depth
    return Unconformity(depth, relief, wavelength, phase, interfaces, first_layer)


def _draw_graben(rng: np.random.Generator, prior: GeologyPrior) -> Graben:
    """A graben (70%) whose faults meet at 0.8-1.6 section depths, or a horst; throw 3-15% of the depth."""
    width, depth = prior.width_m, prior.depth_m
    kind = "graben" if rng.random() < 0.7 else "horst"
    dips = rng.uniform(50.0, 75.0, 2)
    throw = rng.uniform(0.03, 0.15) * depth
    xc = rng.uniform(0.35, 0.65) * width
    if kind == "graben":
        # Separation at the surface from the depth where the two planes meet.
        sep = min(rng.uniform(0.8, 1.6) * depth * float(np.sum(1.0 / np.tan(np.radians(dips)))), 0.7 * width)
    else:
        sep = rng.uniform(0.15, 0.4) * width
    left = Fault(xc - sep / 2, float(dips[0]), throw, "normal", dips_towards_positive_x=kind == "graben")
    right = Fault(xc + sep / 2, float(dips[1]), throw, "normal", dips_towards_positive_x=kind == "horst")
    return Graben((left, right), kind)


def _draw_channels(rng: np.random.Generator, prior: GeologyPrior, interface_depth: np.ndarray) -> list[Body]:
    """One to three channel fills, each cut into the top of a layer below an interface; oldest first."""
    channels = []
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(0, len(interface_depth)))
        xc = rng.uniform(0.1, 0.9) * prior.width_m
        half_width = rng.uniform(0.05, 0.2) * prior.width_m
        thickness = rng.uniform(0.03, 0.1) * prior.depth_m
        # Gas sand or soft mud fill (slower) or cemented sand and carbonate (faster) than the host.
        contrast = rng.uniform(0.7, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.3)
        channels.append(
            Body(kind="channel", xc=xc, width=half_width, zc=float(interface_depth[i]), half_height=thickness,
                 host_layer=i + 1, contrast=contrast)  # fmt: skip
        )
    return sorted(channels, key=lambda b: -b.zc)  # the deeper channel was cut first


def _draw_compaction(rng: np.random.Generator) -> float:
    """Half the new-family geologies: Vp, Vs rise 5-25% from a sequence's top to the section depth."""
    return float(rng.uniform(0.05, 0.25)) if rng.random() < 0.5 else 0.0


def _history_family(rng: np.random.Generator, prior: GeologyPrior, family: str, n: int) -> dict:
    """Layers and events of the families built as histories (everything but the four templates)."""
    width, depth = prior.width_m, prior.depth_m
    out = dict(fold_amplitude=None, fold_wavelength=width, fold_phase=0.0)
    if family == "unconformity":
        n = max(n, 3)  # at least two older layers (one interface to truncate) under one cover layer
        n_cover = int(rng.integers(1, min(2, n - 2) + 1))
        vs, vp = _draw_velocities(rng, prior, n)
        erosion = _draw_unconformity(rng, prior, 0, n_cover)
        events = [_draw_fold(rng, prior, (0.03, 0.12))] if rng.random() < 0.5 else []
        # Tilted about a point on the erosion surface; older interfaces from those that the tilt
        # brings up against the surface inside the section down to the bottom of the section.
        tilt = _draw_tilt(rng, prior, (5.0, 25.0))
        tilt.z_pivot = erosion.depth
        reach = 0.45 * width * np.sin(np.radians(abs(tilt.angle_deg)))
        deepest = max(depth, erosion.depth + reach)
        interface_depth = np.sort(rng.uniform(erosion.depth - reach, deepest, n - n_cover - 1))
        events += [tilt, erosion]
    elif family == "graben":
        interface_depth = _draw_interfaces(rng, prior, n)
        vs, vp = _draw_velocities(rng, prior, n)
        # Gentle folding of the layers before faulting, as in ``faulted``.
        out["fold_amplitude"] = rng.uniform(0.0, 0.03) * depth * np.linspace(0.1, 1.0, n - 1)
        out["fold_wavelength"] = rng.uniform(0.5, 2.0) * width
        out["fold_phase"] = rng.uniform(0, 2 * np.pi)
        events = [_draw_graben(rng, prior)]
    elif family == "channel":
        interface_depth = _draw_interfaces(rng, prior, n)
        vs, vp = _draw_velocities(rng, prior, n)
        # The channels are buried, then the whole section is gently folded, channels with it.
        events = _draw_channels(rng, prior, interface_depth) + [_draw_fold(rng, prior, (0.0, 0.03))]
    elif family == "composite":
        kinds = [str(k) for k in rng.choice(EVENT_KINDS, size=int(rng.integers(1, 5)))]
        covers = [int(rng.integers(1, 3)) for k in kinds if k == "unconformity"]
        n_base = max(2, n - sum(covers))
        interface_depth = _draw_interfaces(rng, prior, n_base)
        vs, vp = _draw_velocities(rng, prior, n_base + sum(covers))
        # Layer arrays run youngest first: the last unconformity's cover on top, the base at the bottom.
        first = list(np.cumsum([0] + covers[::-1])[:-1][::-1])
        events = []
        for kind in kinds:
            if kind == "tilt":
                events.append(_draw_tilt(rng, prior, (3.0, 20.0)))
            elif kind == "fold":
                events.append(_draw_fold(rng, prior, (0.02, 0.1)))
            elif kind == "fault":
                events.append(_draw_fault(rng, width, (0.015 * depth, 0.15 * depth), x_top=(0.2, 0.8)))
            elif kind == "unconformity":
                events.append(_draw_unconformity(rng, prior, int(first.pop(0)), covers.pop(0)))
            else:
                events.append(_draw_body(rng, prior))
    else:
        raise ValueError(f"unknown history family {family!r}")
    if out["fold_amplitude"] is None:
        out["fold_amplitude"] = np.zeros(len(interface_depth))
    out.update(interface_depth=interface_depth, vs=vs, vp=vp, events=tuple(events), compaction=_draw_compaction(rng))
    return out


def random_geology(rng: np.random.Generator, prior: GeologyPrior, family: str | None = None) -> Geology:
    """Draw one geology of ``family`` (random among ``prior.families`` when None)."""
    family = family or str(rng.choice(prior.families))
    if family not in FAMILIES:
        raise ValueError(f"unknown geology family {family!r}; expected one of {FAMILIES}")
    n = int(rng.integers(prior.n_layers[0], prior.n_layers[1] + 1))
    depth, width = prior.depth_m, prior.width_m

    fault = body = None
    if family in ("flat", "folded", "faulted", "intrusion"):
        # The four template families, drawing the same random numbers as they always have.
        interface_depth = _draw_interfaces(rng, prior, n)
        vs, vp = _draw_velocities(rng, prior, n)
        fold_amp = np.zeros(n - 1)
        fold_wavelength, fold_phase = width, 0.0
        if family in ("folded", "faulted", "intrusion"):
            amp = rng.uniform(40.0, 250.0) if family == "folded" else rng.uniform(0.0, 60.0)
            # Folds flatten towards the surface (erosion, younger cover): the top interface barely folds.
            fold_amp = amp * np.linspace(0.1, 1.0, n - 1)
            fold_wavelength = rng.uniform(0.5, 2.0) * width
            fold_phase = rng.uniform(0, 2 * np.pi)
        if family == "faulted":
            fault = _draw_fault(rng, width, (30.0, 300.0))
        if family == "intrusion":
            body = _draw_body(rng, prior)
        history = dict(
            interface_depth=interface_depth, fold_amplitude=fold_amp, fold_wavelength=fold_wavelength,
            fold_phase=fold_phase, vs=vs, vp=vp,
        )  # fmt: skip
    else:
        history = _history_family(rng, prior, family, n)

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
        rho=gardner_density(history["vp"]),
        fault=fault,
        body=body,
        field=rf,
        vs_bounds=(prior.vs_min, prior.vs_max),
        **history,
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
