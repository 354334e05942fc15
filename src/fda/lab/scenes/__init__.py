"""Synthetic scenes made by the tool itself: real encoded videos with known content, and their ground truth.

Every generator describes its clips as scene descriptions (:class:`Renderable`: size, frames, backdrop, objects and
where each one is in every frame, camera, condition) and draws them with the one renderer, :func:`render_scene`, in
the colours of the one palette (:data:`PALETTE`, checked for contrast by :func:`check_palette`); frames go to the
ffmpeg binary through :func:`encode_frames`, bit-exactly. The modules, by concern:

- :mod:`.drawing`: the palette, the shapes (:func:`draw_shape`, :func:`shape_extent`), the renderer;
- :mod:`.encoding`: :func:`encode_frames`, :func:`check_size`;
- :mod:`.msrvtt`: writing a set in the MSR-VTT layout with its :data:`META_FILE` (:func:`write_msrvtt_set`);
- :mod:`.demo`: ``fda generate --kind demo`` (:func:`make_msrvtt_demo`; clips the captions tell apart);
- :mod:`.bench`: the benchmark twins ``motion``, ``null``, ``appearance`` under the scene conditions
  (:func:`make_bench_set`);
- :mod:`.long`: long clips of several motion events, in twins (:func:`make_long_set`, for ``bench_long``);
- :mod:`.generate`: ``fda generate`` (:func:`run_generate`).

The vocabulary (:data:`BENCH_KINDS`, :data:`SCENE_CONDITIONS`) is :mod:`fda.lab.config`'s.
"""

from fda.lab.config import BENCH_KINDS, SCENE_CONDITIONS
from fda.lab.scenes.bench import (BACKGROUND, DEFAULT_FPS, DEFAULT_SIZE, HEAVY_CRF, OBJECTS, PAN, SHAKE, STEP,
                                  TEXTURE_CONTRAST, TEXTURE_RANGE, ZOOM, Scene, SceneObject, camera_path,
                                  layout_objects, make_bench_set, scene_captions, scene_geometry, twin_scenes)
from fda.lab.scenes.demo import (MOTIONS, ClipSpec, DemoObject, DemoScene, ObjectSpec, captions_for, layout_clip,
                                 make_msrvtt_demo, render_clip, render_frames)
from fda.lab.scenes.drawing import (DEMO_COLOURS, FLICKER, MIN_CONTRAST, NOISE, PALETTE, SHAPES, SYNONYMS, Drawn,
                                    Renderable, check_palette, draw_shape, grey_level, render_scene, shape_extent)
from fda.lab.scenes.encoding import CODECS, check_size, encode_frames, frame_count
from fda.lab.scenes.generate import run_generate
from fda.lab.scenes.long import (CAPTION_FILES, EVENT_SECONDS, EVENTS, LONG_META, LONG_OBJECTS, Event, LongScene,
                                 cut_paragraphs_differ, event_frames, event_hits, load_long_clips, long_twins,
                                 make_long_set, one_event_true_of, PATH_FRAMES, period_frames)
from fda.lab.scenes.msrvtt import (META_FILE, check_counts, encode_all, summarize, write_csv, write_msrvtt_set,
                                   write_text)

__all__ = [
    "BENCH_KINDS", "SCENE_CONDITIONS",
    # drawing: the palette, the shapes, the renderer
    "PALETTE", "DEMO_COLOURS", "MIN_CONTRAST", "grey_level", "check_palette", "SHAPES", "SYNONYMS", "draw_shape",
    "shape_extent", "Drawn", "Renderable", "render_scene", "FLICKER", "NOISE",
    # encoding and writing sets
    "CODECS", "check_size", "frame_count", "encode_frames", "META_FILE", "check_counts", "encode_all", "write_csv",
    "write_text", "write_msrvtt_set", "summarize", "run_generate",
    # the demo
    "MOTIONS", "ObjectSpec", "ClipSpec", "DemoObject", "DemoScene", "layout_clip", "render_frames", "render_clip",
    "captions_for", "make_msrvtt_demo",
    # the benchmark twins
    "BACKGROUND", "STEP", "OBJECTS", "DEFAULT_SIZE", "DEFAULT_FPS", "TEXTURE_RANGE", "TEXTURE_CONTRAST", "PAN",
    "ZOOM", "SHAKE", "HEAVY_CRF", "SceneObject", "Scene", "camera_path", "scene_geometry", "layout_objects",
    "twin_scenes", "scene_captions", "make_bench_set",
    # long clips
    "LONG_META", "CAPTION_FILES", "LONG_OBJECTS", "EVENTS", "EVENT_SECONDS", "PATH_FRAMES", "Event", "LongScene",
    "period_frames", "event_frames", "long_twins", "make_long_set", "load_long_clips", "event_hits",
    "cut_paragraphs_differ", "one_event_true_of",
]
