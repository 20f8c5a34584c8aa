"""SIGKILL in the middle of a write (a submission, an embedding folder, an export) leaves the old
file or folder whole: the writers fill a temp sibling and rename it into place at the end.

The writer runs in a child process that stops half-way (after the first half of the new content
is written and flushed) and is SIGKILLed there, the way a kill -9 or the OOM killer ends a run."""

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRITE_FILE = """
import os, sys, time
from keras_fgvc.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write("image_id,hotel_id\\n" + "new,1 2 3 4 5\\n" * 5000)
    f.flush(); os.fsync(f.fileno())
    print("half", flush=True)
    time.sleep(60)
    f.write("the rest\\n")
"""

WRITE_FOLDER = """
import os, sys, time
from keras_fgvc.atomic import replace_dir
built = sys.argv[1] + ".building"
os.makedirs(built)
with open(os.path.join(built, "embeddings.npy"), "w") as f:
    f.write("new half")
print("half", flush=True)
time.sleep(60)
replace_dir(built, sys.argv[1])
"""


def kill_half_way(script, target):
    child = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert child.stdout.readline().strip() == "half"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("existing", [True, False])
def test_a_killed_file_write_leaves_the_old_file_or_none(tmp_path, existing):
    target = tmp_path / "submission.csv"
    if existing:
        target.write_text("image_id,hotel_id\nold,9 8 7 6 5\n")
    kill_half_way(WRITE_FILE, target)
    if existing:
        assert target.read_text() == "image_id,hotel_id\nold,9 8 7 6 5\n"
    else:
        assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".submission.csv.") and leftovers[0].endswith(".tmp")


def test_a_cleanup_after_the_kill_removes_the_temp_file_and_keeps_the_old_one(tmp_path):
    from keras_fgvc.training.callbacks import remove_partial_files

    target = tmp_path / "history.csv"
    target.write_text("epoch,loss\n0,1.0\n")
    kill_half_way(WRITE_FILE, target)
    removed = remove_partial_files(str(tmp_path))  # what a resumed stage does first
    assert len(removed) == 1 and [p.name for p in tmp_path.iterdir()] == ["history.csv"]
    assert target.read_text() == "epoch,loss\n0,1.0\n"


def test_a_killed_folder_write_leaves_the_old_folder_whole(tmp_path):
    target = tmp_path / "embed"
    target.mkdir()
    (target / "embeddings.npy").write_text("old, complete")
    kill_half_way(WRITE_FOLDER, target)
    assert (target / "embeddings.npy").read_text() == "old, complete"


def test_replace_dir_swaps_in_the_new_folder_and_drops_the_old(tmp_path):
    from keras_fgvc.atomic import replace_dir

    target, built = tmp_path / "export", tmp_path / ".export-new"
    target.mkdir()
    (target / "saved_model.pb").write_text("old")
    built.mkdir()
    (built / "saved_model.pb").write_text("new")
    assert replace_dir(str(built), str(target)) == str(target)
    assert (target / "saved_model.pb").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["export"]


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from keras_fgvc.atomic import replace_dir
rename = os.replace
def rename_then_die(source, target):
    rename(source, target)
    if ".old-" in str(target):  # the old folder is set aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = rename_then_die
built = sys.argv[1] + ".building"
os.makedirs(built)
with open(os.path.join(built, "embeddings.npy"), "w") as f:
    f.write("new, complete")
replace_dir(built, sys.argv[1])
"""


def test_a_kill_between_replace_dirs_renames_is_undone_by_recover_dir(tmp_path):
    from keras_fgvc.atomic import recover_dir

    target = tmp_path / "embed"
    target.mkdir()
    (target / "embeddings.npy").write_text("old, complete")
    child = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(target)], check=False,
                           env={**os.environ, "PYTHONPATH": ROOT})
    assert child.returncode == -signal.SIGKILL
    # the one moment replace_dir's target is absent: the old folder whole under another name
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith(".embed.old-")]
    assert not target.exists() and len(aside) == 1
    assert recover_dir(str(target)) == []  # nothing deleted: the old folder is put back
    assert (target / "embeddings.npy").read_text() == "old, complete"
    # the writer's own temp folder is its writer's to clear (hotel_id deletes its embed.tmp-*)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embed", "embed.building"]
    # once the folder is in place, a set-aside copy is a leftover: deleted
    (tmp_path / ".embed.old-1").mkdir()
    assert recover_dir(str(target)) == [str(tmp_path / ".embed.old-1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embed", "embed.building"]
