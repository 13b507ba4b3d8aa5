"""The seed document's section 5.2 example, unchanged, with its bodies filled in.

A robot in a corridor starts at cell 0 and must reach cell GOAL. It does not know
which way the goal lies: it learns the value of each move from the rewards, exploring
at first and then walking straight to the goal. When it arrives, the execution module
reports the trip and ends the program (the seed's loop is ``while True``).

Run it with ``python examples/seed_quickstart.py``.
"""

import random

from llmagentos import Agent, PerceptionModule, PlanningModule, ExecutionModule, LearningModule

GOAL = 20
MOVES = (-1, +1)
values = dict.fromkeys(MOVES, 0.0)  # what the agent has learned about each move
memory = {"last_move": 0}  # the move being learned about (shared by planning and learning)
rng = random.Random(0)


class MyPerceptionModule(PerceptionModule):
    def perceive(self, observation):
        # 处理 observation，提取特征
        position = 0 if observation is None else observation  # reset() gives no observation
        features = {"position": position, "at_wall": position == 0}
        return features


class MyPlanningModule(PlanningModule):
    def plan(self, features):
        # 根据 features，制定行动计划
        explore = rng.random() < 0.3 or values[-1] == values[+1]
        action = rng.choice(MOVES) if explore else max(MOVES, key=values.__getitem__)
        memory["last_move"] = action
        return action


class MyExecutionModule(ExecutionModule):
    position = 0
    steps = 0

    def execute(self, action):
        # 执行 action，与外部环境交互
        self.position = max(0, self.position + action)
        self.steps += 1
        if self.position == GOAL:
            print(f"reached cell {GOAL} after {self.steps} steps; learned values: {values}")
            raise SystemExit(0)
        observation, reward = self.position, float(action)  # forward is rewarded
        return observation, reward


class MyLearningModule(LearningModule):
    def learn(self, observation, reward):
        # 根据 observation 和 reward，更新 LLM 的知识和技能
        move = memory["last_move"]
        values[move] += 0.5 * (reward - values[move])


agent = Agent(
    perception_module=MyPerceptionModule(),
    planning_module=MyPlanningModule(),
    execution_module=MyExecutionModule(),
    learning_module=MyLearningModule()
)

# 运行 LLM Agent
observation = agent.reset()
while True:
    action = agent.act(observation)
    observation, reward = agent.step(action)
