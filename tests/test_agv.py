"""Tests for the AGV warehouse env (rlkd.envs.agv): geometry, dynamics, API semantics, rendering."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from rlkd.envs.agv import (
    AGV_RADIUS,
    COLOR_SETS,
    GOAL_RADIUS,
    AGVWarehouseEnv,
    AGVWarehouseVectorEnv,
    WarehouseMap,
    register_agv_envs,
)
from rlkd.envs.agv.colors import rgb_to_hue
from rlkd.envs.agv.maps import free_points

register_agv_envs()

DT, V_MAX, W_MAX = 0.25, 1.0, 1.5  # the env defaults the closed forms below assume


def straight_map(**kw) -> WarehouseMap:
    """10 x 10 floor, one rack at x in [6, 8], y in [4, 6]; AGV at (2, 5) facing east."""
    base = dict(
        width=10.0, height=10.0, racks=((6.0, 4.0, 8.0, 6.0),), start_pose=(2.0, 5.0, 0.0), goal=(2.0, 9.0)
    )
    base.update(kw)
    return WarehouseMap(**base)


def forward(n: int = 1) -> np.ndarray:
    """Full speed straight ahead for n envs: (n, 2)."""
    return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (n, 1))


# ----------------------------------------------------------------------------- API / checker
@pytest.mark.parametrize("env_id", ["rlkd/AGVWarehouse-v0", "rlkd/AGVWarehouse-ComplexDynamic-Pixels-v0"])
def test_check_env_passes(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_make_and_make_vec_limits() -> None:
    env = gym.make("rlkd/AGVWarehouse-ComplexDynamic-v0")
    assert env.spec.max_episode_steps == 4000
    assert env.unwrapped.sim.max_episode_steps == 4000
    venv = gym.make_vec("rlkd/AGVWarehouse-ComplexStatic-v0", num_envs=3)
    assert isinstance(venv, AGVWarehouseVectorEnv)
    assert venv.max_episode_steps == 3000
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.observation_space.shape == (3, 25)
    assert venv.action_space.shape == (3, 2)
    limits = {
        "Bay": 100,
        "Dock": 100,
        "SimpleStatic": 2000,
        "SimpleDynamic": 2000,
        "ComplexStatic": 3000,
        "ComplexDynamic": 4000,
    }
    for name, limit in limits.items():
        assert gym.spec(f"rlkd/AGVWarehouse-{name}-v0").max_episode_steps == limit
        pix = gym.make_vec(f"rlkd/AGVWarehouse-{name}-Pixels-v0", num_envs=2)
        assert pix.single_observation_space.shape == (64, 64, 3)
        assert pix.sim.distractors and pix.max_episode_steps == limit
    register_agv_envs()  # idempotent


def test_vector_and_single_trajectories_identical() -> None:
    n, seed, steps = 3, 11, 300
    venv = AGVWarehouseVectorEnv(n, "complex-dynamic", max_episode_steps=40)
    singles = [AGVWarehouseEnv("complex-dynamic", max_episode_steps=40) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    sobs = [e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_array_equal(vobs, np.stack(sobs))
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(steps):
        act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        # Bias forward so some episodes run to truncation and some collide.
        act[:, 0] = np.abs(act[:, 0])
        vobs, vrew, vterm, vtrunc, info = venv.step(act)
        for i, e in enumerate(singles):
            o, r, te, tr, sinfo = e.step(act[i])
            assert (te, tr) == (bool(vterm[i]), bool(vtrunc[i]))
            assert r == vrew[i]
            assert sinfo["collision"] == info["collision"][i]
            np.testing.assert_array_equal(o, info["final_obs"][i])
            if te or tr:
                o, _ = e.reset()
                resets += 1
            np.testing.assert_array_equal(o, vobs[i])
    assert resets > 5  # autoresets were exercised


# ----------------------------------------------------------------------------- geometry
def test_lidar_hand_computed_distances() -> None:
    # Static obstacle (zero-length lane) of radius 0.3 at (2, 8): 3 m north of the AGV.
    scene = straight_map(obstacle_paths=((2.0, 8.0, 2.0, 8.0),), goal=(9.0, 9.0))
    env = AGVWarehouseEnv(custom_map=scene, n_beams=4, lidar_range=8.0)
    obs, _ = env.reset(seed=0)
    # beams: east -> rack face x=6 (4 m); north -> obstacle (3 - 0.3); west -> wall (2); south -> wall (5)
    np.testing.assert_allclose(obs[5:9] * 8.0, [4.0, 2.7, 2.0, 5.0], atol=1e-5)
    # Pose on the map: (2, 5) on the 10 x 10 floor, heading 0.
    np.testing.assert_allclose(obs[9:], [0.2, 0.5, 1.0, 0.0], atol=1e-6)
    # Goal layout: distance / diagonal, bearing cos/sin in the AGV frame; v, w zero at reset.
    gd = math.hypot(7.0, 4.0)
    np.testing.assert_allclose(obs[:5], [gd / math.hypot(10, 10), 7 / gd, 4 / gd, 0, 0], atol=1e-6)
    # Range cap: nothing within 3 m except the west wall at 2 m.
    env = AGVWarehouseEnv(custom_map=scene, n_beams=4, lidar_range=3.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[5:9], [1.0, 2.7 / 3, 2 / 3, 1.0], atol=1e-5)


def test_lidar_diagonal_beam_hits_rack_corner_region() -> None:
    # Heading 45 deg from (5, 3): the beam meets the rack's bottom face y=4 at x=6 (its corner),
    # nudge to x=5.5 start so it hits the bottom face at x=6.5: distance sqrt(2).
    scene = straight_map(start_pose=(5.5, 3.0, math.pi / 4), goal=(9.0, 9.0))
    env = AGVWarehouseEnv(custom_map=scene, n_beams=8, lidar_range=20.0)
    obs, _ = env.reset(seed=0)
    assert obs[5] * 20.0 == pytest.approx(math.sqrt(2.0), abs=1e-5)
    # beam 2 (135 deg): from (5.5, 3) up-left, no rack, exits through the west wall x=0 after
    # 5.5*sqrt(2) > top wall y=10 after 7*sqrt(2), so 5.5*sqrt(2).
    assert obs[5 + 2] * 20.0 == pytest.approx(5.5 * math.sqrt(2.0), abs=1e-4)


def _reference_lidar(
    scene: WarehouseMap, x: float, y: float, th: float, obst: np.ndarray, n: int, rng_max: float
):
    """Slow exact ray casting against rack edges, walls and discs, one beam at a time."""
    segs = [(0, 0, scene.width, 0), (scene.width, 0, scene.width, scene.height)]
    segs += [(scene.width, scene.height, 0, scene.height), (0, scene.height, 0, 0)]
    for x0, y0, x1, y1 in scene.rack_array:
        segs += [(x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)]
    out = []
    for b in range(n):
        a = th + 2 * math.pi * b / n
        dx, dy = math.cos(a), math.sin(a)
        best = rng_max
        for ax, ay, bx, by in segs:
            ex, ey = bx - ax, by - ay
            den = dx * ey - dy * ex
            if abs(den) < 1e-12:
                continue
            t = ((ax - x) * ey - (ay - y) * ex) / den
            s = ((ax - x) * dy - (ay - y) * dx) / den
            if t >= 0 and -1e-9 <= s <= 1 + 1e-9:
                best = min(best, t)
        for cx, cy in obst:
            mx, my = cx - x, cy - y
            p = mx * dx + my * dy
            d2 = p * p - (mx * mx + my * my) + scene.obstacle_radius**2
            if d2 >= 0 and p - math.sqrt(d2) >= 0:
                best = min(best, p - math.sqrt(d2))
        out.append(best)
    return np.array(out)


def test_lidar_matches_reference_raycaster_in_complex_map() -> None:
    env = AGVWarehouseVectorEnv(24, "complex-dynamic", n_beams=16)
    env.reset(seed=3)
    for _ in range(5):
        env.step(np.tile([[0.0, 0.3]], (24, 1)))
    sim = env.sim
    fast = sim.lidar(sim.x, sim.y, sim.theta, sim.obst)
    for i in range(24):
        ref = _reference_lidar(sim.scene, sim.x[i], sim.y[i], sim.theta[i], sim.obst[i], 16, sim.lidar_range)
        np.testing.assert_allclose(fast[i], ref, atol=2e-4)
    # The per-interval (grid) fast path and the per-rack path agree exactly.
    assert sim._product is not None and len(sim._extra) == 0
    saved = sim._product, sim._extra
    sim._product, sim._extra = None, sim.scene.rack_array.astype(np.float32)
    np.testing.assert_array_equal(sim.lidar(sim.x, sim.y, sim.theta, sim.obst), fast)
    sim._product, sim._extra = saved


@pytest.mark.parametrize(("a0", "a1"), [(1.0, 0.0), (0.4, 0.7), (-0.2, -1.0), (3.0, -5.0)])
def test_kinematics_match_closed_form(a0: float, a1: float) -> None:
    x0, y0, th0 = 10.0, 10.0, 0.3
    scene = WarehouseMap(width=30.0, height=30.0, start_pose=(x0, y0, th0), goal=(1.0, 1.0))
    env = AGVWarehouseEnv(custom_map=scene)
    env.reset(seed=0)
    v = (np.clip(a0, -1, 1) + 1) / 2 * V_MAX  # out-of-range actions are clipped
    w = np.clip(a1, -1, 1) * W_MAX
    for k in range(1, 13):
        obs, *_ = env.step(np.array([a0, a1], dtype=np.float32))
        t = k * DT
        if w == 0:
            ex, ey = x0 + v * t * math.cos(th0), y0 + v * t * math.sin(th0)
        else:
            ex = x0 + v / w * (math.sin(th0 + w * t) - math.sin(th0))
            ey = y0 - v / w * (math.cos(th0 + w * t) - math.cos(th0))
        eth = (th0 + w * t + math.pi) % (2 * math.pi) - math.pi
        np.testing.assert_allclose(env.pose, [ex, ey, eth], atol=1e-9)
        np.testing.assert_allclose(obs[3:5], [v / V_MAX, w / W_MAX], atol=1e-6)


def _steps_until_done(env: AGVWarehouseEnv, limit: int = 50) -> tuple[int, dict, float]:
    for k in range(1, limit + 1):
        _, r, term, trunc, info = env.step(np.array([1.0, 0.0]))
        if term or trunc:
            return k, info, r
    raise AssertionError("episode did not end")


def test_collision_with_rack_exactly_when_disc_overlaps() -> None:
    # Rack face at x=6, AGV from x=2 at 0.25 m/step: overlap once x > 6 - 0.3, i.e. step 15 (x=5.75).
    env = AGVWarehouseEnv(custom_map=straight_map())
    env.reset(seed=0)
    k, info, r = _steps_until_done(env)
    assert k == 15 and info["collision"] and not info["is_success"] and r == 0.0
    assert env.pose[0] == pytest.approx(5.75)


def test_collision_with_wall_and_obstacle() -> None:
    env = AGVWarehouseEnv(custom_map=straight_map(racks=()))  # wall at x=10: x > 9.7 at step 31
    env.reset(seed=0)
    k, info, _ = _steps_until_done(env, 100)
    assert k == 31 and info["collision"]
    # Obstacle disc at (4, 5): centres closer than 0.6 once x > 3.4, i.e. step 6 (x=3.5).
    env = AGVWarehouseEnv(custom_map=straight_map(obstacle_paths=((4.0, 5.0, 4.0, 5.0),)))
    env.reset(seed=0)
    k, info, _ = _steps_until_done(env)
    assert k == 6 and info["collision"]


def test_goal_reached_exactly_at_goal_radius() -> None:
    # Goal at (4.1, 5): within 0.5 m once x >= 3.6, i.e. step 7 (x=3.75); step 6 (x=3.5) is 0.6 away.
    env = AGVWarehouseEnv(custom_map=straight_map(goal=(4.1, 5.0)))
    env.reset(seed=0)
    k, info, r = _steps_until_done(env)
    assert GOAL_RADIUS == 0.5 and AGV_RADIUS == 0.3
    assert k == 7 and info["is_success"] and not info["collision"] and r == 1.0


def test_moving_obstacles_shuttle_along_lane() -> None:
    scene = straight_map(obstacle_paths=((3.0, 8.0, 7.0, 8.0),), goal=(9.0, 2.0))
    env = AGVWarehouseVectorEnv(64, custom_map=scene)
    env.reset(seed=0)
    start = env.sim.obst.copy()
    for _ in range(20):
        env.step(np.tile([[-1.0, 0.0]], (64, 1)))  # stand still
    moved = np.abs(env.sim.obst - start).max(axis=(1, 2))
    assert np.all(moved > 0)
    assert np.all((env.sim.obst[..., 0] >= 3.0 - 1e-9) & (env.sim.obst[..., 0] <= 7.0 + 1e-9))
    np.testing.assert_allclose(env.sim.obst[..., 1], 8.0)


def test_dense_reward_is_progress() -> None:
    env = AGVWarehouseEnv(custom_map=straight_map(goal=(5.0, 2.0)), reward_mode="dense")
    env.reset(seed=0)
    before = np.hypot(*(env.goal - env.pose[:2]))
    _, r, *_ = env.step(np.array([1.0, 0.0]))
    after = np.hypot(*(env.goal - env.pose[:2]))
    assert r == pytest.approx((before - after) / math.hypot(10, 10), abs=1e-6)
    assert r > 0
    heavy = AGVWarehouseEnv(
        custom_map=straight_map(goal=(5.0, 2.0)), reward_mode="dense", progress_weight=10.0
    )
    heavy.reset(seed=0)
    assert heavy.step(np.array([1.0, 0.0]))[1] == pytest.approx(10 * r, rel=1e-5)


# ----------------------------------------------------------------------------- autoreset / seeding
def test_same_step_autoreset_semantics() -> None:
    # Env reaches the goal at step 7 (see above); the returned obs is already the next episode's.
    scene = straight_map(goal=(4.1, 5.0))
    venv = AGVWarehouseVectorEnv(2, custom_map=scene)
    single = AGVWarehouseEnv(custom_map=scene)
    obs, _ = venv.reset(seed=5)
    s_obs, _ = single.reset(seed=5)
    for k in range(1, 8):
        act = np.array([[1.0, 0.0], [-1.0, 0.0]])  # env 1 stands still
        obs, rew, term, _, info = venv.step(act)
        s_obs, _, s_term, *_ = single.step(act[0])
        if k < 7:
            assert not info["_final_obs"].any()
    assert term.tolist() == [True, False] and s_term
    assert info["_final_obs"].tolist() == [True, False]
    assert info["is_success"].tolist() == [True, False] and info["_is_success"].all()
    assert info["collision"].tolist() == [False, False] and info["_collision"].all()
    np.testing.assert_array_equal(info["final_obs"][0], s_obs)  # terminal observation
    np.testing.assert_array_equal(obs[0], single.reset()[0])  # fresh reset observation
    assert obs[0][3] == 0.0 and info["final_obs"][0][3] == 1.0  # reset speed vs. terminal speed
    assert rew.tolist() == [1.0, 0.0]
    assert venv.sim.steps[0] == 0 and venv.sim.steps[1] == 7


def test_vector_env_truncates_itself() -> None:
    venv = AGVWarehouseVectorEnv(2, custom_map=straight_map(), max_episode_steps=3)
    venv.reset(seed=0)
    stay = np.array([[-1.0, 0.0], [-1.0, 0.0]])
    for _ in range(2):
        _, _, term, trunc, _ = venv.step(stay)
        assert not trunc.any()
    _, _, term, trunc, info = venv.step(stay)
    assert trunc.all() and not term.any() and info["_final_obs"].all()


def test_seeding_reproducible() -> None:
    def rollout(seed: int | None) -> np.ndarray:
        env = AGVWarehouseVectorEnv(8, "simple-dynamic")
        obs = [env.reset(seed=seed)[0]]
        rng = np.random.default_rng(1)
        for _ in range(100):
            obs.append(env.step(rng.uniform(-1, 1, (8, 2)))[0])
        return np.stack(obs)

    a, b, c = rollout(3), rollout(3), rollout(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(rollout(None), rollout(None))
    # Starts and goals are randomised by the seed, and sampled where the AGV fits.
    env = AGVWarehouseVectorEnv(256, "complex-static")
    env.reset(seed=0)
    assert len(np.unique(env.sim.goal[:, 0])) > 200
    assert not env.sim.collides().any()


def test_complex_goal_far_from_start_in_other_aisle() -> None:
    env = AGVWarehouseVectorEnv(512, "complex-static")
    env.reset(seed=0)
    d = np.hypot(*(env.sim.goal - env.poses()[:, :2]).T)
    assert d.min() >= 15.0
    assert (env.poses()[:, 0] < 3.0).all() and (env.sim.goal[:, 0] > 21.0).all()


def _waypoint_policy(pose: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Steer towards target: (n, 2) actions from poses (n, 3) and targets (n, 2)."""
    err = np.arctan2(target[:, 1] - pose[:, 1], target[:, 0] - pose[:, 0]) - pose[:, 2]
    err = (err + np.pi) % (2 * np.pi) - np.pi
    turn = np.clip(err / (W_MAX * DT), -1, 1)
    speed = np.where(np.abs(err) < 0.3, 1.0, -1.0)  # turn on the spot, then drive
    return np.stack([speed, turn], axis=1)


def test_bay_goal_is_a_short_drive_that_random_actions_rarely_make() -> None:
    n = 256
    env = AGVWarehouseVectorEnv(n, "bay")
    env.reset(seed=3)
    d = np.hypot(*(env.sim.goal - env.poses()[:, :2]).T)
    assert d.min() >= 2.5 and d.max() <= 6.0 * np.sqrt(2)
    outcome = {}
    for name in ("directed", "random"):
        env.reset(seed=3)
        done, success = np.zeros(n, bool), np.zeros(n, bool)
        rng = np.random.default_rng(0)
        for _ in range(env.max_episode_steps):
            if name == "directed":
                act = _waypoint_policy(env.poses(), env.sim.goal)
            else:
                act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
            _, _, term, trunc, info = env.step(act)
            success |= ~done & info["is_success"]
            done |= term | trunc
        outcome[name] = success.mean()
    # Walls are the only obstacles: turning on the spot and driving straight always arrives.
    assert outcome["directed"] == 1.0
    assert outcome["random"] < 0.15


def test_complex_static_reachable_by_directed_policy_not_by_random() -> None:
    n = 64
    env = AGVWarehouseVectorEnv(n, "complex-static")
    env.reset(seed=123)
    goal = env.goals()
    # Aisle centre line of the goal's aisle: racks at 2.5 + 2.8 i, 1 m deep, so aisles centre at 4.4 + 2.8 i.
    lane_y = 4.4 + 2.8 * np.round((goal[:, 1] - 4.4) / 2.8)
    # Along the west cross aisle to the goal's aisle, then east down it to the goal.
    route = [np.stack([np.full(n, 1.5), lane_y], 1), goal]
    leg = np.zeros(n, dtype=int)
    done = np.zeros(n, bool)
    success = np.zeros(n, bool)
    steps = 0
    while not done.all() and steps < 800:
        pose = env.poses()
        target = np.stack([route[k][i] for i, k in enumerate(leg)])
        reached = np.hypot(*(target - pose[:, :2]).T) < 0.2
        leg = np.minimum(leg + reached, len(route) - 1)
        target = np.stack([route[k][i] for i, k in enumerate(leg)])
        _, _, term, trunc, info = env.step(_waypoint_policy(pose, target))
        success |= info["is_success"] & ~done
        done |= term | trunc
        steps += 1
    assert success.mean() > 0.9, success.mean()
    # Uniform random actions: episodes end in collisions long before reaching the goal.
    env = AGVWarehouseVectorEnv(512, "complex-static")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    succ = episodes = 0
    for _ in range(300):
        _, _, term, trunc, info = env.step(rng.uniform(-1, 1, (512, 2)))
        succ += int(info["is_success"].sum())
        episodes += int((term | trunc).sum())
    assert episodes > 2000 and succ / episodes < 0.005


# ----------------------------------------------------------------------------- pixels / distractors
def test_pixel_observations_and_render() -> None:
    env = AGVWarehouseVectorEnv(4, "simple-dynamic", obs_mode="pixels", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    frame = env.render(env_index=2)
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    # The AGV (blue) and goal (green) are visible, obstacles (orange) too.
    for color in ([30, 90, 220], [40, 175, 70], [240, 140, 20]):
        assert (obs == np.array(color, np.uint8)).all(-1).any(axis=(1, 2)).all()
    single = AGVWarehouseEnv("simple-static", render_mode="rgb_array", render_size=128)
    single.reset(seed=0)
    assert single.render().shape == (128, 128, 3)


def _hues(palette: np.ndarray) -> np.ndarray:
    """Hues of the floor, rack and obstacle palette slots, (n, 3)."""
    return rgb_to_hue(palette[:, [0, 1, 3]])


def test_distractor_palette_walks_inside_its_colour_set() -> None:
    env = AGVWarehouseVectorEnv(16, "complex-dynamic", obs_mode="pixels", distractors=True)
    env.reset(seed=0)
    lo, hi = COLOR_SETS["train"]
    prev = env.sim.palette.copy()
    for _ in range(30):
        env.step(np.zeros((16, 2)))
        pal = env.sim.palette.copy()
        assert (pal[:, [0, 1, 3]] != prev[:, [0, 1, 3]]).any(axis=(1, 2)).all()  # every env changes
        h = _hues(pal)
        assert ((h >= lo - 0.01) & (h <= hi + 0.01)).all()
        prev = pal
    tlo, thi = COLOR_SETS["test"]
    assert hi < tlo and lo < hi and tlo < thi  # train and test hue ranges are disjoint
    env.set_color_set("test")
    obs, *_ = env.step(np.zeros((16, 2)))
    h = _hues(env.sim.palette)
    assert ((h >= tlo - 0.01) & (h <= thi + 0.01)).all()
    assert (obs == env.sim.palette[:, None, None, 0]).all(-1).any()  # the floor colour is in the image
    single = AGVWarehouseEnv("simple-static", obs_mode="pixels", distractors=True)
    single.reset(seed=0)
    single.set_color_set("test")
    assert (_hues(single.sim.palette) >= tlo - 0.01).all()


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_helpful_errors() -> None:
    with pytest.raises(ValueError, match="complex-static"):
        AGVWarehouseVectorEnv(2, "complex-statc")
    with pytest.raises(ValueError, match="n_beams"):
        AGVWarehouseEnv(n_beams=0)
    with pytest.raises(ValueError, match=r"goal .* inside a rack"):
        AGVWarehouseEnv(custom_map=straight_map(goal=(7.0, 5.0)))
    with pytest.raises(ValueError, match="start pose"):
        AGVWarehouseEnv(custom_map=straight_map(start_pose=(6.9, 5.0, 0.0)))
    with pytest.raises(ValueError, match="xmax > xmin"):
        AGVWarehouseEnv(custom_map=straight_map(racks=((5.0, 1.0, 4.0, 2.0),)))
    with pytest.raises(ValueError, match="obs_mode"):
        AGVWarehouseEnv(obs_mode="rgb")
    with pytest.raises(ValueError, match="colour set"):
        AGVWarehouseEnv(color_set="validation")
    env = AGVWarehouseVectorEnv(3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3, 2\)"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([[0.0, 0.0], [np.nan, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="colour set"):
        env.set_color_set("nope")
    single = AGVWarehouseEnv()
    single.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        single.step(np.array([np.inf, 0.0]))
    with pytest.raises(ValueError, match="numeric"):
        single.step(["a", "b"])


def test_spawn_candidates_keep_clear_of_obstacle_lanes() -> None:
    scene = gym.make("rlkd/AGVWarehouse-SimpleDynamic-v0").unwrapped.scene
    pts = free_points(scene, scene.start_regions)
    from rlkd.envs.agv.maps import segment_distance

    assert segment_distance(pts, scene.path_array).min() > AGV_RADIUS + scene.obstacle_radius


# ----------------------------------------------------------------------------- media
def test_write_gif_and_plot_trajectories(tmp_path) -> None:
    from PIL import Image
    from rlkd.envs.agv.render import episode_to_gif, plot_trajectories

    from rlkd.core.media import write_gif

    env = AGVWarehouseEnv("complex-dynamic", render_mode="rgb_array", render_size=96)
    env.reset(seed=0)
    frames, xy = [env.render()], [env.pose[:2]]
    for _ in range(5):
        env.step(np.array([1.0, 0.2]))
        frames.append(env.render())
        xy.append(env.pose[:2])
    gif = episode_to_gif(frames, tmp_path / "sub" / "ep.gif", fps=5)
    with Image.open(gif) as im:
        assert im.size == (96, 96) and im.n_frames == 6
        assert im.info["duration"] == 200
    # Float frames in [0, 1] and grey frames are accepted; mismatched shapes are not.
    write_gif(np.zeros((2, 8, 8)), tmp_path / "g.gif")
    with pytest.raises(ValueError, match="shape"):
        write_gif([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], tmp_path / "bad.gif")
    with pytest.raises(ValueError, match="at least one frame"):
        write_gif([], tmp_path / "none.gif")
    png = plot_trajectories(
        env, [np.array(xy), np.array(xy)[::-1]], tmp_path / "traj.png", successes=[True, False]
    )
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500
    with pytest.raises(ValueError, match="success flags"):
        plot_trajectories("simple-static", [np.zeros((3, 2))], tmp_path / "x.png", successes=[True, False])


def test_final_pose_is_where_the_episode_ended() -> None:
    # Full speed east from (2, 5) into the rack face at x = 6: the disc (r = 0.3) first overlaps it
    # when x > 5.7, i.e. after 15 steps of 0.25 m (x = 5.75). That pose is reported, then a reset.
    env = AGVWarehouseVectorEnv(2, custom_map=straight_map())
    env.reset(seed=0)
    for _ in range(15):
        _, _, term, _, info = env.step(forward(2))
    assert term.all() and info["collision"].all()
    np.testing.assert_allclose(info["final_pose"][:, :2], [[5.75, 5.0], [5.75, 5.0]], atol=1e-9)
    np.testing.assert_allclose(env.poses()[:, :2], [[2.0, 5.0], [2.0, 5.0]])
