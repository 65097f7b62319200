"""Compatibility name for `tfzoo.flow.solver` (`from tfzoo.flow.tvl1 import TVL1` keeps working).

The package attribute `tfzoo.flow.tvl1` is the numpy function `tvl1`; import the layers from
`tfzoo.flow` or `tfzoo.flow.solver`.
"""

from tfzoo.flow.solver import TVL1, TVNet, FlowInputError, tvl1, tvl1_video  # noqa: F401
