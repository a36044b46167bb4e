"""Checks of the sampling arguments every ssmgen pipeline shares."""


def check_sampling_arguments(num_inference_steps, guidance_scale, output_type, output_types: tuple[str, ...]) -> None:
    """Raise a ValueError naming the argument when the steps, the guidance scale or the output type is invalid."""
    if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    if not isinstance(guidance_scale, int | float) or guidance_scale < 0:
        raise ValueError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
    if output_type not in output_types:
        raise ValueError(f"output_type must be one of {output_types}, got {output_type!r}")
