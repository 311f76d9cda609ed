import numpy as np
import pytest
import soundfile as sf

from speechpress.audio import load_audio, probe_audio
from speechpress.errors import AudioError, SpeechpressError

from helpers import speech


@pytest.fixture(scope="module")
def clip():
    return speech(3.0)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_decodes_real_codecs_at_16k(tmp_path, clip, fmt, subtype):
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, clip, 16000, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.sample_rate == 16000 and audio.samples.dtype == np.float32
    assert abs(audio.duration - 3.0) < 0.06  # mp3 adds encoder padding
    if fmt in ("WAV", "FLAC"):  # lossless: 16-bit quantisation only
        assert np.abs(audio.samples - clip).max() < 1e-4


def test_stereo_44k_is_downmixed_and_resampled(tmp_path, clip):
    import soxr

    up = soxr.resample(clip, 16000, 44100).astype(np.float32)
    stereo = np.stack([up, 0.5 * up], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    audio = load_audio(path)
    assert audio.source_channels == 2 and audio.source_sample_rate == 44100
    assert abs(len(audio.samples) - len(clip)) <= 2
    # mono = mean of channels = 0.75 * signal, back at 16 kHz
    n = min(len(clip), len(audio.samples))
    err = np.abs(audio.samples[1000 : n - 1000] - 0.75 * clip[1000 : n - 1000]).max()
    assert err < 0.02


def test_long_file_is_never_truncated(tmp_path):
    x = np.tile(speech(5.0), 20)  # 100 s
    path = tmp_path / "long.flac"
    sf.write(path, x, 16000)
    assert len(load_audio(path).samples) == len(x)
    assert probe_audio(path).duration == pytest.approx(100.0)


def test_array_input_needs_rate_and_resamples():
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(np.zeros(100, np.float32))
    out = load_audio(np.ones((8000, 2), np.float32), sample_rate=8000)
    assert len(out.samples) == 16000


def _bad_inputs(tmp_path, clip):
    cases = {}
    cases["missing"] = (tmp_path / "nope.wav", "no such file")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty file")
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    cases["zero-length"] = (zero, "no audio samples")
    full = tmp_path / "full.wav"
    sf.write(full, clip, 16000)
    trunc = tmp_path / "trunc.wav"
    trunc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cases["truncated wav"] = (trunc, "truncated")
    flac = tmp_path / "full.flac"
    sf.write(flac, clip, 16000)
    corrupt = tmp_path / "corrupt.flac"
    data = bytearray(flac.read_bytes())
    corrupt.write_bytes(bytes(data[: len(data) // 2]))
    cases["truncated flac"] = (corrupt, "corrupt or truncated")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all\n" * 20)
    cases["text named .wav"] = (text, "cannot decode")
    nan = tmp_path / "nan.wav"
    y = clip.copy()
    y[1234] = np.nan
    sf.write(nan, y, 16000, subtype="FLOAT")
    cases["nan"] = (nan, "non-finite")
    inf = tmp_path / "inf.wav"
    y = clip.copy()
    y[99] = np.inf
    sf.write(inf, y, 16000, subtype="FLOAT")
    cases["inf"] = (inf, "non-finite")
    cases["directory"] = (tmp_path, "is a directory")
    return cases


def test_every_bad_input_is_a_typed_error_naming_the_file(tmp_path, clip):
    for label, (path, reason) in _bad_inputs(tmp_path, clip).items():
        for fn in (load_audio, probe_audio):
            with pytest.raises(AudioError) as err:
                fn(path)
            assert str(path) in str(err.value), label
            assert reason in str(err.value), (label, str(err.value))
            assert isinstance(err.value, SpeechpressError)


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, clip, capsys):
    from speechpress.cli import main

    for label, (path, reason) in _bad_inputs(tmp_path, clip).items():
        assert main(["info", str(path)]) == 2, label
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (label, err)
        assert reason in err


def test_random_bytes_named_mp3_give_the_real_reason_and_no_decoder_noise(tmp_path, capfd):
    # libsndfile hands .mp3 to mpg123, which prints its notes on file descriptor 2 and then fails the open with
    # "File does not exist or is not a regular file" for a file that exists.
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.RandomState(0).bytes(5000))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot decode as audio") and "does not exist" not in message
    assert "MPEG" in message  # the decoder's own reason: no valid MPEG frame header
    from speechpress.data.loaders import load_manifest
    from speechpress.errors import DataError

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "x", "audio": "noise.mp3", "task": "asr_long", "prompt": "?", "answer": "a", "metric": "wer"}\n')
    with pytest.raises(DataError, match="m.jsonl:1: .*cannot decode as audio") as err:
        load_manifest(manifest)
    assert "does not exist" not in str(err.value)
    assert capfd.readouterr().err == ""


def _damaged(tmp_path, fmt: str, seconds: float = 6.0, at: float = 2.7):
    """A file whose encoded bytes are overwritten from about ``at`` seconds on (found by encoding the first
    ``at`` seconds alone: the bytes before the damage)."""
    x = np.tile(speech(3.0), 2)[: int(seconds * 16000)]
    whole, head = tmp_path / f"whole.{fmt}", tmp_path / f"head.{fmt}"
    sf.write(whole, x, 16000, format=fmt.upper())
    sf.write(head, x[: int(at * 16000)], 16000, format=fmt.upper())
    data = bytearray(whole.read_bytes())
    cut = head.stat().st_size
    data[cut : cut + 2000] = np.random.RandomState(1).bytes(2000)
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_damage_mid_file_is_reported_at_the_time_decoded_before_it(tmp_path, fmt, capfd):
    path = _damaged(tmp_path, fmt)
    capfd.readouterr()
    for fn in (load_audio, probe_audio):
        with pytest.raises(AudioError, match=r"(corrupt or truncated audio|truncated) after") as err:
            fn(path)
        seconds = float(str(err.value).split(" after ")[1].split(" s")[0])
        assert 1.5 < seconds <= 2.8, str(err.value)  # decoded up to the frame holding the damage, not "0.00 s"
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("rate", [16000, 44100])
def test_streamed_windows_are_the_loaded_samples_and_encode_gives_the_same_tokens(tmp_path, rate):
    """``stream_audio`` hands out exactly ``load_audio``'s samples, window by window, and ``SpeechLM.encode`` of a
    path (streamed) equals encode of the decoded array: tokens, spans and duration."""
    import soundfile as sf
    import torch

    from speechpress.audio import load_audio, stream_audio
    from speechpress.model.speechlm import SpeechLM
    from speechpress.model.config import TINY

    seconds = 71.3  # two full windows and a short one
    wave = 0.1 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 220 / rate).astype(np.float32)
    wave += 0.01 * np.random.default_rng(0).standard_normal(len(wave)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, wave, rate)
    whole = load_audio(path).samples
    pieces = list(stream_audio(path, 480000))
    assert [len(p) for p in pieces[:-1]] == [480000, 480000] and np.array_equal(np.concatenate(pieces), whole)
    model = SpeechLM.from_config(TINY, seed=0)
    streamed, loaded = model.encode(path), model.encode(whole)
    assert torch.equal(streamed.embeddings, loaded.embeddings) and torch.equal(streamed.spans, loaded.spans)
    assert streamed.duration == pytest.approx(loaded.duration) == pytest.approx(len(whole) / 16000)
