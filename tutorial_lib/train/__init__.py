"""Train a TransUNet on CamVid or on your own folder data set, from scratch or from Google's
ImageNet weights: CPU, one GPU, or several processes (DDP).

Python::

    from tutorial_lib.train import TrainConfig, train, load_checkpoint
    result = train(TrainConfig(config="tiny", epochs=2, max_images=16, out="runs/try"),
                   callback=lambda event: print(event["event"], event.get("loss")))
    model, meta = load_checkpoint(result.best_checkpoint)

Command line (``--help`` lists every option)::

    python -m tutorial_lib.train --config tiny --epochs 40 --cache --out runs/camvid_tiny
    python -m tutorial_lib.train --data DIR --classes DIR/classes.json --out runs/mine   # your data
    python -m tutorial_lib.train --config R50-ViT-B_16 --pretrained R50+ViT-B_16.npz ... # fine-tune
    python -m tutorial_lib.train --config tiny-cnn --out runs/tiny_cnn     # the CNN-only baseline
    python -m tutorial_lib.train --out runs/camvid_tiny --resume           # continue a stopped run
    torchrun --nproc_per_node 2 -m tutorial_lib.train --config tiny ...    # DistributedDataParallel
    python -m tutorial_lib.train --export runs/camvid_tiny/best.pt checkpoints/camvid_tiny.pt

What a run writes to ``--out``: ``metrics.jsonl`` (one JSON object per epoch), ``last.pt``
(after every epoch) and ``best.pt`` (best validation mIoU). Both are written atomically
(temporary file + fsync + ``os.replace``), so a crash or a full disk never leaves a
half-written checkpoint, and both load with ``torch.load(..., weights_only=True)``.

Data: ``--data DIR`` is CamVid (found by its SegNet layout: ``train/``, ``trainannot/``, ...) or
a folder data set ``DIR/train/{images,masks}`` + ``DIR/val/{images,masks}`` with a class
table (``--classes FILE`` or ``DIR/classes.json``; ``tutorial_lib.data.folder``). The number of
classes and their names (stored in the checkpoints) come from the table. Before training,
every pair of the splits used is read once (``tutorial_lib.data.check``, rank 0); a fault that
would stop training ends the run before anything is written (``DataCheckError``; exit status 2
from the command line; ``--no-check`` skips it).

Where each part lives
---------------------
=====================  ==============================================================
``config.py``          ``TrainConfig``: every option, once (the CLI is built from it)
``engine.py``          ``train``: set up, then per epoch: steps, validate, checkpoint
``loaders.py``         training/validation batches, seeded augmentation, class weights
``optim.py``           optimiser, warmup + poly/cosine schedule, the time budget
``distributed.py``     torchrun / DistributedDataParallel
``cli.py``             ``python -m tutorial_lib.train``
``..runtime``          device, precision (bf16/fp16/fp32), channels_last
``..checkpoint``       atomic save, ``read_checkpoint``/``load_checkpoint``, export
``..evaluate``         the validation protocol (``evaluate_model``)
=====================  ==============================================================

Recipe and why
--------------
* Loss: ``(1 - w) * CE + w * Dice`` with ``w = --dice-weight`` (0.5 as in the official
  TransUNet), void pixels ignored by both terms; optional class weights on CE
  (``--class-weights median`` computes SegNet's median-frequency balancing on the training
  labels, ``segnet`` uses the published SegNet values).
* Optimiser: AdamW (lr 1e-3, betas 0.9/0.999, weight decay 0.01, no decay on biases,
  norm weights and position embeddings), linear warmup for ``--warmup-epochs`` then
  poly(0.9) decay to 0, gradient-norm clipping at 1.0. The official recipe (SGD lr 0.01,
  momentum 0.9, weight decay 1e-4, poly 0.9, batch 24) fine-tunes an ImageNet-pretrained
  encoder; here everything starts from random weights, with batch 8 and about a thousand
  steps in a CPU budget. Transformers trained from scratch usually do better with
  Adam-type updates and warmup (ViT/DeiT, SETR, Segmenter all use them): Adam's per-parameter step
  sizes cope with the very different gradient scales of convolutions, LayerNorms and
  attention weights at initialisation, and warmup keeps the first, noisy steps from
  wrecking the attention layers. ``--optimizer sgd`` gives the official recipe. (An argued
  choice: the shipped checkpoint's CPU budget left no room for a measured comparison.)
* Time budget: ``--time-limit MINUTES`` makes the poly/cosine decay follow the fraction of
  the budget used (or of the steps, whichever is further) and stops when the time is up,
  so a run on a shared or slow machine still ends with a fully annealed learning rate.
  The budget is training time: set-up, validation and checkpoint writing are not counted.
* Augmentation: random rescale around the evaluation scale, random crop of the model's
  input size (padding is void), horizontal flip, colour jitter
  (``tutorial_lib.data.train_transform``, in ``loaders.py``). Each sample's augmentation is seeded by
  (seed, epoch, index), so it does not depend on workers, ranks or resuming.
* Validation: full-resolution labels (``tutorial_lib.evaluate``): image resized to the
  model's input size, logits resized back, argmax, confusion matrix over the split
  (``--eval-mode sliding``: model-size windows over the full-resolution frame instead;
  ``--eval-flip``: the mean with the mirrored frame's logits). The checkpoint remembers both,
  so ``tutorial_lib.evaluate`` and ``tutorial_lib.predict`` use them by default.
* Precision: ``--precision auto`` = bf16 autocast on a GPU with bf16 (fp16 + GradScaler on
  an older GPU) and on a CPU with native bf16 (``avx512_bf16`` or ``amx_bf16``), else fp32.
  On a CPU without them bf16 is emulated and slower than fp32. On a CPU shared with other
  busy processes, set ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): OpenMP's default
  busy-waiting then costs more than the second thread gains. Model and batches are
  ``channels_last`` (NHWC) by default, on the CPU too: oneDNN's convolutions work on NHWC
  directly, about 1.1x faster training (``--no-channels-last`` to compare).
* Reproducibility: model init, dropout, data order (``DistributedSampler`` seeded with
  (seed, epoch)) and augmentation are seeded; ``--resume`` restores model, optimiser,
  scheduler, scaler and all RNG states, so an interrupted single-process run ends with
  the same weights as an uninterrupted one.
* Multi-process: under ``torchrun`` each process trains on its share of the data
  (``DistributedSampler``; gloo on CPU, nccl on GPU); losses and the confusion matrix are
  summed over processes; only rank 0 writes files and shows progress bars. The batch
  size is per process.
"""

from ..checkpoint import (
    CHECKPOINT_FORMAT,
    SHIPPED_CHECKPOINT,
    CheckpointSaveError,
    config_from_dict,
    config_to_dict,
    export_checkpoint,
    load_checkpoint,
    read_checkpoint,
)
from ..losses import SegmentationLoss
from ..runtime import PRECISIONS, cpu_supports_bf16, pick_device, resolve_precision
from ..transunet import PRESETS, TransUNet, TransUNetConfig, get_config
from .cli import build_parser, main, resume_config
from .config import PRETRAINED_PRESETS, TRAIN_PRESETS, TrainConfig, config_from_args
from .engine import TrainingDivergedError, TrainResult, train
from .loaders import DataCheckError, SeededAugmentation
from .optim import lr_factor

_SeededAugmentation = SeededAugmentation  # the name notebooks and tests used before the split

__all__ = [
    "CHECKPOINT_FORMAT", "PRECISIONS", "PRESETS", "PRETRAINED_PRESETS", "TRAIN_PRESETS", "DataCheckError", "SHIPPED_CHECKPOINT", "CheckpointSaveError",
    "SeededAugmentation", "SegmentationLoss", "TrainConfig", "TrainResult", "TrainingDivergedError",
    "TransUNet", "TransUNetConfig", "build_parser", "config_from_args", "config_from_dict", "config_to_dict",
    "cpu_supports_bf16", "export_checkpoint", "get_config", "load_checkpoint", "lr_factor", "main",
    "pick_device", "read_checkpoint", "resolve_precision", "resume_config", "train",
]
