"""Config schemas, composition (Hydra compose API) and validation."""

from keras_fgvc.config.schema import Config  # noqa: F401
from keras_fgvc.config.validate import ConfigError, to_config, to_dict  # noqa: F401
