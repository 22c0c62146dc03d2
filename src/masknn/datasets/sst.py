"""HadISST1 sea-surface temperature, offline (the file cartopy ships)."""

from __future__ import annotations

import numpy as np

from masknn.datasets._files import package_file

__all__ = ["load_hadisst"]


def load_hadisst() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One month of HadISST1 SST on a 1 degree grid, land as genuine no-data.

    Read with ``scipy.io.netcdf_file`` from
    ``cartopy/data/netcdf/HadISST1_SST_update.nc`` (cartopy is not imported).

    Returns:
        ``(sst, valid, lat, lon)``: ``sst`` float32 ``(180, 360)`` in degrees C
        with NaN on land, ``valid`` bool ``(180, 360)`` (True = ocean),
        latitudes (north to south) and longitudes (-179.5 .. 179.5).
    """
    try:
        from scipy.io import netcdf_file
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("load_hadisst: needs scipy; install it with: pip install 'masknn[demo]'") from err
    path = package_file("cartopy", "data/netcdf/HadISST1_SST_update.nc")
    with netcdf_file(str(path), "r", mmap=False) as f:
        var = f.variables["sst"]
        raw = np.array(var[0], dtype=np.float32)
        fill = float(var._attributes.get("_FillValue", -1e30))
        lat = np.array(f.variables["lat"][:], dtype=np.float32)
        lon = np.array(f.variables["lon"][:], dtype=np.float32)
    # HadISST marks land with the fill value and (in some releases) sea ice with -1000.
    valid = np.isfinite(raw) & (raw > -100.0) & (raw != fill)
    sst = np.where(valid, raw, np.nan).astype(np.float32)
    return sst, valid, lat, lon
