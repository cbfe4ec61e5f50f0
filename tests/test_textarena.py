"""TextArena games as envs (system/envs/textarena.py): seeding that other envs cannot disturb, moves read
from brackets, TextArena's invalid moves in our accounting, its rewards, and the check_env table of
docs/tasks-and-environments.md; e2e: two GRPO steps on GuessTheNumber through launcher/grpo.py."""

import os
import random

import pytest

from system.config.grpo import ConfigError, load_config
from system.envs import EnvCheckError, check_env, make_env, resolve_env
from system.envs.textarena import parse_move

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# check_env over TextArena 0.7.4's single-player games, as docs/tasks-and-environments.md tabulates it:
# "pass", the rule a game breaks, or why it cannot be played here (raised when the env is made).
CHECK_ENV = {
    "2048-v0": "pass", "Blackjack-v0": "pass", "Crosswords-v0": "pass", "FifteenPuzzle-v0": "pass",
    "FrozenLake-v0": "pass", "GuessTheNumber-v0": "pass", "LightsOut-v0": "pass", "LogicPuzzle-v0": "pass",
    "Mastermind-v0": "pass", "Minesweeper-v0": "pass", "RushHour-v0": "pass", "Secretary-v0": "pass",
    "Set-v0": "pass", "Sokoban-v0": "pass", "Sudoku-v0": "pass",
    "Bandit-v0": "different seeds, different tasks",  # its rules show no bracketed move for check_env to play
    "PegJump-v0": "different seeds, different tasks",  # one fixed board
    "TowerOfHanoi-v0": "different seeds, different tasks",  # one fixed start
    "Countdown-v0": "no exceptions",  # its reward on a second invalid move is the message (arguments swapped)
    "Cryptarithm-v0": "no exceptions",
    "Slitherlink-v0": "no exceptions",
    "ThreeCardMonte-v0": "no exceptions",
    "Hangman-v0": "cannot be played",  # NLTK's word list, which needs a download
    "WordLadder-v0": "cannot be played",
    "Wordle-v0": "cannot be played",
    "WordSearch-v0": "cannot be played",
    "GuessWho-v0": "cannot be played",  # an OpenRouter API key
    "TwentyQuestions-v0": "cannot be played",
    "Klondike-v0": "cannot be played",  # a syntax error on Python 3.11
    "UltimateTexasHoldem-v0": "cannot be played",
    "BabyAiText-v0": "cannot be played",  # needs the gym package
}


def guess(number: int) -> str:
    return f"I will try <think>{number}?</think> [{number}]"


def play_2048(env, seed: int, moves: list[str], between=None) -> list:
    """An episode of 2048 (every move spawns a random tile), `between()` called after each step."""
    steps = [env.reset(seed)]
    for move in moves:
        steps.append(env.step(move))
        if between:
            between()
    return steps


def test_same_seed_same_game_whatever_else_the_process_draws():
    moves = ["[up]", "[left]", "[down]", "[right]", "[up]", "[left]"]
    alone = play_2048(make_env("textarena:2048-v0"), 3, moves)
    other = make_env("textarena:2048-v0")
    other.reset(4)

    def disturb():
        other.step("[right]")  # another game drawing from the library's random in between
        random.random()  # and the process's own draws

    assert play_2048(make_env("textarena:2048-v0"), 3, moves, disturb) == alone
    state = random.getstate()
    play_2048(make_env("textarena:2048-v0"), 5, moves)
    assert random.getstate() == state, "the env changed the process-wide random state"
    assert play_2048(make_env("textarena:2048-v0"), 4, moves) != alone


def test_the_move_is_the_last_bracket():
    assert parse_move("maybe [3], no: [7]") == "[7]"
    assert parse_move("[[5]]") == "[5]"
    assert parse_move("no move here") == "no move here"  # the game rejects it in its own words


def test_invalid_moves_are_counted_and_the_second_ends_the_game():
    env = make_env("textarena:GuessTheNumber-v0", max_turns=8, invalid_penalty=-0.2)
    env.reset(1)
    observation, reward, done, info = env.step("ten")
    assert (reward, done, info) == (-0.2, False, {"success": False, "invalid_action": True})
    assert "invalid move" in observation
    assert env.step(guess(10))[1:] == (0.0, False, {"success": False, "invalid_action": False})
    assert env.step(guess(10))[3]["invalid_action"]  # a repeat: invalid, tolerated after a valid move
    observation, reward, done, info = env.step("[0]")  # out of range: the second in a row
    assert done and info == {"success": False, "invalid_action": True} and "Game over" in observation
    outcome = reward + 0.2  # the game's own reward, for how close the last guess was
    assert 0.0 <= outcome < 1.0


def test_a_win_is_a_success_with_the_games_reward():
    env = make_env("textarena:GuessTheNumber-v0", max_turns=10)
    env.reset(7)
    low, high = 1, 20
    for _ in range(10):
        middle = (low + high) // 2
        observation, reward, done, info = env.step(guess(middle))
        if done:
            break
        low, high = (middle + 1, high) if "higher" in observation else (low, middle - 1)
    assert done and info == {"success": True, "invalid_action": False} and reward == 1.0


def test_unknown_games_and_games_one_cannot_play_fail_at_start_up():
    with pytest.raises(ValueError, match="did you mean GuessTheNumber-v0"):
        resolve_env("textarena:GuessTheNumbr-v0")
    with pytest.raises(ConfigError, match="env.cls"):
        load_config(os.path.join(ROOT, "configs", "grpo_textarena_cpu.yaml"), ["env.cls=textarena:NoGame-v0"])
    with pytest.raises(ValueError, match="cannot be played here: AssertionError"):
        make_env("textarena:TicTacToe-v0")  # two players
    with pytest.raises(ValueError, match="unknown param 'max_turn'"):
        make_env("textarena:GuessTheNumber-v0", max_turn=3)


def test_game_params_reach_the_game():
    env = make_env("textarena:GuessTheNumber-v0", game_params={"max_number": 5})
    assert "between 1 and 5" in env.reset(0)


@pytest.mark.parametrize("game", sorted(CHECK_ENV))
def test_check_env_table(game):
    expected = CHECK_ENV[game]
    if expected == "cannot be played":
        with pytest.raises(ValueError, match="cannot be played here"):
            resolve_env(f"textarena:{game}")()
    elif expected == "pass":
        check_env(resolve_env(f"textarena:{game}"))
    else:
        with pytest.raises(EnvCheckError, match=f"breaks the rule '{expected}'"):
            check_env(resolve_env(f"textarena:{game}"))


def train_tiny(config: str, tmp_path, overrides=()) -> tuple:
    """Two GRPO steps of a shipped config with the tiny model (the 24 game's e2e settings) through
    launcher/grpo.py: (the actors, the run folder, its metrics)."""
    from launcher.grpo import train
    from system.reporting.metrics import read_metrics
    from tests.test_multiturn_e2e import TINY_RUN

    cfg = load_config(os.path.join(ROOT, "configs", config),
                      TINY_RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=run", *overrides])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    trained = train(cfg, run_dir)
    return trained, run_dir, read_metrics(run_dir)


@pytest.mark.e2e
def test_two_grpo_steps_on_a_textarena_game(ray_job, tiny_model, tmp_path):
    """Env workers play the game, its invalid moves reach the metrics, held-out episodes are the game's."""
    import json

    trained, run_dir, metrics = train_tiny("grpo_textarena_cpu.yaml", tmp_path)
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for m in metrics[:2]:
        assert 1.0 <= m["env/turns"] <= 2.0
        assert m["env/invalid_actions"] > 0  # the random model's replies are no numbers
    with open(os.path.join(run_dir, "eval", "step_000002.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [row["prompt"] for row in logged] == ["textarena:GuessTheNumber-v0, seed 1",
                                                 "textarena:GuessTheNumber-v0, seed 3"]
    assert all(row["completion"].startswith("[env] You are Player 0. You are playing Guess The Number")
               and "[model] [" in row["completion"] for row in logged)
    trained.shutdown()
