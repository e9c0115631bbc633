# dgdehaze: `make demo` and `make test` build .venv when it is missing (tools/setup_venv.sh), then run.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: venv test demo results clean-venv

$(VENV)/.ready: requirements.txt requirements-fleet.txt requirements.lock setup.py tools/setup_venv.sh tools/build_vision_msgs.sh \
		$(wildcard tools/vision_msgs/msg/*.msg)
	VENV=$(VENV) bash tools/setup_venv.sh

venv: $(VENV)/.ready

# Two workers (pytest-xdist), each test file whole in one of them (its module fixtures built once): much of the suite
# waits on subprocesses, DDS discovery and the disk, which the other worker's tests fill. TEST_WORKERS=0 runs them in
# this process, one after the other.
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests

# The demo: the real dgdehaze_node, started with the shipped parameters file as `ros2 launch` starts it, replays the
# sample foggy-road bag shipped in data/demo; out/demo gets the report (report.html), the output bag (bag/) with the
# node's outputs at the original stamps, summary.json and the node's log (node.log); out/demo_figures.json the
# figures table.
# The clip has no calibration: its camera is taken as a car's forward camera 1.3 m above the road, level (and K
# from a 60 degree field of view, data/demo/README.md), which gives the node a visibility to plot.
DEMO_BAG := data/demo/rural_fog_day
demo: venv
	$(VENV)/bin/dgdehaze bag-eval $(DEMO_BAG) --image-topic /camera/image_raw/compressed \
		--camera-info-topic /camera/camera_info --node --params-file config/dgdehaze.yaml \
		--node-param camera_height:=1.3 \
		--out out/demo --json out/demo_figures.json
	@echo "demo report: out/demo/report.html"

# The generated tables of docs/RESULTS.md: dgdehaze eval on every set of ../shared/data, JSON in docs/results/, tables
# rendered into the doc (about 15 minutes on 2 CPU cores). LITE=path.pt evaluates another checkpoint as `lite`.
results: venv
	bash tools/make_results.sh

clean-venv:
	rm -rf $(VENV)
