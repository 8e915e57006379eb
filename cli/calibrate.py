"""``storesense calibrate intrinsics|floor|ble|report``: thin commands; the work lives in calibration/."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config, progress_bar

calibrate_app = typer.Typer(no_args_is_help=True, help="Calibrate cameras to the floor and BLE nodes to their radio.")


@calibrate_app.command("ble")
def calibrate_ble(
    data: Path = typer.Argument(..., help="A Kolakowski-layout dataset folder, or sightings of reference tags: a "
                                "walk-test CSV ts,node,tag,rssi or a JSONL recording of ble_sighting messages."),
    references: Optional[Path] = typer.Option(None, help="Reference tag positions (CSV tag,x,y[,height] or JSON) "
                                              "for a recording."),
    config: Optional[Path] = CONFIG_OPTION,
    output: Optional[Path] = typer.Option(None, help="Write the fitted ble_nodes entries (YAML) here."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG of RSSI vs distance with the fitted curves."),
    peers: Optional[Path] = typer.Option(None, help="Receivers that also advertise: CSV node,tag (the tag id each "
                                         "node advertises as); what they hear of each other fits them too."),
) -> None:
    """Fit each BLE node's path-loss model (RSSI at 1 m, exponent) with a robust loss; print the residuals."""
    from ..datasets.loaders.ble_calibration import run_calibrate_ble

    fits, lines = run_calibrate_ble(data, references=references, config_path=config, output=output, plot=plot,
                                    peers=peers)
    table = Table(show_edge=False)
    for col in ("node", "RSSI@1m dBm", "exponent", "samples", "RMSE dB", "MAD dB", "p90 |res| dB"):
        table.add_column(col, justify="left" if col == "node" else "right")
    for f in fits:
        table.add_row(f.node, f"{f.rssi_at_1m:.1f}", f"{f.exponent:.2f}" + ("" if f.exponent_fitted else " (kept)"),
                      str(f.n_samples), f"{f.rmse_db:.2f}", f"{f.mad_db:.2f}", f"{f.p90_abs_residual_db:.2f}")
    console.print(table)
    for line in lines:
        console.print(line)


@calibrate_app.command("intrinsics")
def calibrate_intrinsics_cmd(
    images: Path = typer.Argument(..., help="Folder of board images (one camera, one resolution)."),
    board: str = typer.Option("9x6", help="Chessboard: inner corners COLSxROWS. ChArUco: squares COLSxROWS."),
    square: float = typer.Option(..., help="Square side in metres (e.g. 0.025)."),
    fix_aspect: bool = typer.Option(False, "--fix-aspect", help="Keep fx/fy = 1 (CALIB_FIX_ASPECT_RATIO)."),
    zero_tangent: bool = typer.Option(False, "--zero-tangent", help="Assume p1 = p2 = 0."),
    rational: bool = typer.Option(False, "--rational", help="Rational model: 8 distortion coefficients."),
    fix_principal_point: bool = typer.Option(False, "--fix-principal-point", help="Keep cx, cy at the centre."),
    charuco: bool = typer.Option(False, "--charuco", help="The board is a ChArUco board."),
    marker: Optional[float] = typer.Option(None, help="ChArUco marker side in metres."),
    dict_name: str = typer.Option("DICT_4X4_50", "--dict", help="ChArUco ArUco dictionary."),
    output: Path = typer.Option(Path("intrinsics.yaml"), "--output", "-o", help="Result YAML to write."),
    min_views: int = typer.Option(3, min=1, help="Fewest views the board must be found in."),
) -> None:
    """Calibrate a camera's intrinsics from chessboard or ChArUco images."""
    from ..calibration.board import parse_board_size
    from ..calibration.charuco import CharucoPattern
    from ..calibration.chessboard import Chessboard
    from ..calibration.intrinsics import CalibrationFlags, calibrate_intrinsics

    cols, rows = parse_board_size(board)
    if charuco:
        if marker is None:
            raise StoresenseError("--charuco needs --marker SIZE (marker side in metres)")
        pattern = CharucoPattern(cols, rows, square, marker, dict_name)
    else:
        pattern = Chessboard(cols, rows, square)
    flags = CalibrationFlags(fix_aspect=fix_aspect, zero_tangent=zero_tangent, rational=rational,
                             fix_principal_point=fix_principal_point)
    with progress_bar() as bar:
        task = bar.add_task("finding the board", total=None)
        result = calibrate_intrinsics(images, pattern, flags, min_views=min_views,
                                      progress=lambda done, total, name: bar.update(
                                          task, completed=done, total=total, description=f"finding the board: {name}"))
    result.save(output)
    K = result.matrix()
    console.print(f"fx {K[0, 0]:.3f}  fy {K[1, 1]:.3f}  cx {K[0, 2]:.3f}  cy {K[1, 2]:.3f}  "
                  f"dist {[round(d, 5) for d in result.dist]}", highlight=False)
    console.print(f"RMS reprojection error {result.rms:.4f} px over {len(result.views)} views "
                  f"(flags: {', '.join(result.flags) or 'none'})", highlight=False)
    worst = sorted(result.views, key=lambda v: -v.error_px)[:3]
    console.print("worst views: " + ", ".join(f"{v.name} {v.error_px:.3f} px" for v in worst), highlight=False)
    if result.rejected:
        console.print(f"[yellow]board not found in {len(result.rejected)} image(s):[/] {', '.join(result.rejected)}",
                      highlight=False)
    console.print(f"wrote {output}")


@calibrate_app.command("floor")
def calibrate_floor_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="Store YAML to write the calibration into."),
    camera: str = typer.Option(..., help="Camera id in the store config."),
    points: Optional[Path] = typer.Option(None, help="Correspondences: CSV or YAML of u, v, x, y[, z]."),
    aruco: Optional[Path] = typer.Option(None, help="Image of ArUco markers lying on the floor."),
    markers: Optional[Path] = typer.Option(None, help="Marker layout YAML (id -> floor position)."),
    intrinsics: Optional[Path] = typer.Option(None, help="Intrinsics result file (default: the config's)."),
    method: str = typer.Option("auto", help="auto (pose when intrinsics are known), pnp or homography."),
    threshold: float = typer.Option(4.0, help="RANSAC inlier threshold, pixels."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also save the fit and residuals (YAML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and report, but leave the store file alone."),
) -> None:
    """Fit a camera to the floor (pose or homography) and write it into the store config."""
    from ..calibration.workflow import calibrate_camera_floor

    if method not in ("auto", "pnp", "homography"):
        raise StoresenseError(f"--method {method!r}: expected auto, pnp or homography")
    done = calibrate_camera_floor(config, camera, points=points, aruco=aruco, markers=markers,
                                  intrinsics_file=intrinsics, method=method, threshold_px=threshold,
                                  write=not dry_run)
    fit = done.fit
    table = Table(show_edge=False)
    for col in ("point", "u", "v", "x", "y", "px", "cm", ""):
        table.add_column(col, justify="left" if col in ("point", "") else "right")
    for p in fit.points:
        cm = "-" if p.residual_cm is None else f"{p.residual_cm:.1f}"
        table.add_row(p.label, f"{p.u:.1f}", f"{p.v:.1f}", f"{p.x:.2f}", f"{p.y:.2f}", f"{p.residual_px:.2f}", cm,
                      "" if p.inlier else "[red]outlier[/]")
    console.print(table)
    console.print(f"{fit.method}: {fit.inlier_count()}/{len(fit.points)} inliers, RMS {fit.rms_px():.2f} px, "
                  f"{fit.rms_cm():.1f} cm on the floor", highlight=False)
    centre = fit.camera_position()
    if centre is not None:
        console.print(f"camera at x {centre[0]:.2f} m, y {centre[1]:.2f} m, height {centre[2]:.2f} m", highlight=False)
    for note in fit.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output:
        fit.save(output)
        console.print(f"wrote the fit to {output}")
    if done.written:
        what = "extrinsics" if fit.method == "pnp" else "homography"
        extra = (" and intrinsics" if done.intrinsics_written else "") + (
            f" (removed {', '.join(done.removed)})" if done.removed else "")
        console.print(f"[green]wrote {what}{extra} for {camera} into {config}[/] (validated)")
    else:
        console.print(f"dry run: {config} left unchanged")


@calibrate_app.command("report")
def calibrate_report_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG plots and report.md."),
    config: Optional[Path] = CONFIG_OPTION,
    intrinsics: Optional[list[Path]] = typer.Option(None, "--intrinsics", help="Intrinsics result file (repeatable)."),
    floor: Optional[list[Path]] = typer.Option(None, "--floor", help="Floor fit file from `calibrate floor -o` "
                                                                      "(repeatable)."),
    cell: float = typer.Option(0.25, help="Coverage grid cell size, metres."),
    height: float = typer.Option(0.0, help="Height above the floor the coverage is computed at, metres."),
) -> None:
    """Plot reprojection errors, residual vectors and the cameras' floor coverage."""
    from ..calibration.floor_fit import FloorFit
    from ..calibration.intrinsics import IntrinsicsResult
    from ..calibration.report import write_report

    cfg = load_config(config)
    results = [IntrinsicsResult.load(p) for p in intrinsics or []]
    fits = [FloorFit.load(p) for p in floor or []]
    written = write_report(cfg, out, intrinsics=results, floor_fits=fits, cell=cell, height=height)
    for path in written:
        console.print(f"wrote {path}")
