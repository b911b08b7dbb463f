"""``cvkit visualize``: curves, filters, feature maps, top patches, synthesized inputs, saliency,
embeddings and confusion matrices of a trained run, as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, seed_or_global, state
from cvkit.cli.options import BatchSize, Out, Seed
from cvkit.progress import console

WHAT = "What to draw (at least one)"
HOW = "How"


def visualize_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'cvkit train'.")],
    curves: Annotated[bool, typer.Option("--curves", rich_help_panel=WHAT, help=(
        "Loss and accuracy per epoch, train against val, the best epoch marked: curves.png."))] = False,
    filters: Annotated[bool, typer.Option("--filters", rich_help_panel=WHAT, help=(
        "The first convolution's kernels as a grid (colour for RGB inputs): filters.png."))] = False,
    activations: Annotated[Optional[Path], typer.Option(metavar="IMAGE", rich_help_panel=WHAT, help=(
        "The feature maps of --layer for IMAGE (up to 64 channels): activations_STEM_LAYER.png."))] = None,
    max_patches: Annotated[bool, typer.Option("--max-patches", rich_help_panel=WHAT, help=(
        "For the --units units of --layer with the largest mean activation, the --top images of --split "
        "(default train) that activate each most, cropped to its receptive field: max_patches_LAYER_SPLIT.png "
        "and .csv."))] = False,
    maximize: Annotated[bool, typer.Option("--maximize", rich_help_panel=WHAT, help=(
        "The input that maximizes --unit of --layer (or the score of --class), by gradient ascent with "
        "jitter, blur and L2: maximize_LAYER_unitU.png or maximize_class_NAME.png."))] = False,
    saliency: Annotated[Optional[Path], typer.Option(metavar="IMAGE", rich_help_panel=WHAT, help=(
        "The gradient saliency of IMAGE for the predicted class (or --class), and SmoothGrad with --smooth: "
        "saliency_STEM.png."))] = None,
    embedding: Annotated[bool, typer.Option("--embedding", rich_help_panel=WHAT, help=(
        "The penultimate features of --split (default val) in 2-D, coloured by class: embedding_SPLIT_PROJ.png "
        "and .csv."))] = False,
    confusion: Annotated[bool, typer.Option("--confusion", rich_help_panel=WHAT, help=(
        "The confusion matrix of --split (default val): confusion_SPLIT.png."))] = False,
    templates: Annotated[bool, typer.Option("--templates", rich_help_panel=WHAT, help=(
        "A linear classifier's weights over the pixels as images, one per class (--arch perceptron), or an MLP's "
        "first-layer units: templates.png."))] = False,
    adversarial: Annotated[Optional[Path], typer.Option(metavar="IMAGE", rich_help_panel=WHAT, help=(
        "An adversarial example of IMAGE (classify runs): each pixel changed by at most --eps to lower the "
        "predicted class's probability (or raise --target's), by FGSM (--steps 1) or PGD: the perturbed image, "
        "the perturbation amplified, the top classes before and after: adversarial_STEM.png, _image.png, "
        "_perturbation.png and .csv."))] = None,
    invert: Annotated[Optional[Path], typer.Option(metavar="IMAGE", rich_help_panel=WHAT, help=(
        "IMAGE rebuilt from its features at --layer alone (what the layer keeps), from noise with total-variation "
        "and L-alpha priors, beside the image and its saliency (where the class looks): invert_STEM_LAYER.png "
        "and _image.png."))] = None,
    layer: Annotated[Optional[str], typer.Option(rich_help_panel=HOW, help=(
        "The layer for --activations, --max-patches and --maximize --unit (default: the last convolutional "
        "stage), and for --invert (required; any layer 'cvkit inspect' lists). A wrong name lists the valid "
        "ones."))] = None,
    units: Annotated[int, typer.Option(rich_help_panel=HOW, help="--max-patches: how many units (rows).")] = 8,
    top: Annotated[int, typer.Option(rich_help_panel=HOW, help="--max-patches: patches per unit (columns).")] = 8,
    unit: Annotated[Optional[int], typer.Option(rich_help_panel=HOW, help="--maximize: the channel of --layer.")] = None,
    class_name: Annotated[Optional[str], typer.Option("--class", rich_help_panel=HOW, help=(
        "--maximize: the class whose score to maximize (without --unit); --saliency: the class to explain "
        "(default: the predicted one)."))] = None,
    steps: Annotated[Optional[int], typer.Option(rich_help_panel=HOW, show_default=False, help=(
        "--maximize, --invert: optimization steps (default 200); --adversarial: 1 is FGSM (the default), more "
        "is PGD with steps of 2.5 x eps / N."))] = None,
    eps: Annotated[Optional[str], typer.Option(metavar="E", rich_help_panel=HOW, help=(
        "--adversarial: the largest change of a pixel, in [0, 1] units before normalization: 0.03 or 8/255."))] = None,
    target: Annotated[Optional[str], typer.Option(metavar="CLASS", rich_help_panel=HOW, help=(
        "--adversarial: push the image towards this class (default: away from the predicted one)."))] = None,
    smooth: Annotated[int, typer.Option(rich_help_panel=HOW, help=(
        "--saliency: also SmoothGrad over N noisy copies (noise: 15% of the input's range); 0: off."))] = 0,
    projection: Annotated[str, typer.Option(rich_help_panel=HOW, help=(
        "--embedding: pca, tsne (scikit-learn) or umap (umap-learn, when installed)."))] = "pca",
    points: Annotated[int, typer.Option(rich_help_panel=HOW, help=(
        "--embedding: at most this many images (a seeded sample beyond).")) ] = 5000,
    split: Annotated[Optional[str], typer.Option(rich_help_panel=HOW, help=(
        "train, val or test (default: train for --max-patches, val for --embedding and --confusion)."))] = None,
    data: Annotated[Optional[Path], typer.Option(rich_help_panel=HOW, help=(
        "Dataset directory (default: the one the run was trained on)."))] = None,
    out: Out = None,
    batch_size: BatchSize = 256,
    seed: Seed = None,
) -> None:
    """Pictures of what RUN has learned, one PNG each, titled with what it shows; prints the files written.

    Writes into --out (default: RUN/visualize). Earlier pictures there are kept, one drawn again is
    replaced, and the folder is swapped in only once every new picture is complete.

    Example: cvkit visualize runs/fmnist --curves --filters --max-patches --layer features.1 --units 8 --top 8
    """
    from cvkit.explain.visual import VisualizeRequest, visualize
    from cvkit.explain.visual.adversarial import parse_eps

    request = VisualizeRequest(
        curves=curves, filters=filters, activations=str(activations) if activations else None,
        max_patches=max_patches, maximize=maximize, saliency=str(saliency) if saliency else None,
        embedding=embedding, confusion=confusion, templates=templates,
        adversarial=str(adversarial) if adversarial else None, invert=str(invert) if invert else None,
        eps=None if eps is None else parse_eps(eps), attack_class=target, layer=layer, units=units, top=top, unit=unit,
        class_name=class_name, steps=steps, smooth=smooth, projection=projection, points=points, split=split,
        data=str(data) if data else None, seed=seed_or_global(seed), batch_size=batch_size)
    result = visualize(run, request, out, state.device)
    if not state.quiet:
        for line in result.summary:
            console.print(line, markup=False, highlight=False)
    for path in result.files:
        emit(str(path))


def register(app: typer.Typer) -> None:
    app.command("visualize")(visualize_command)
