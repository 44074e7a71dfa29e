"""The deploy protocol of the re-parameterizable blocks, written once for both frameworks.

``switch_to_deploy()`` is the official repositories' name; ``reparameterize()`` (timm) and
``re_parameterize()`` (PaddleClas) are what other code calls, so every block answers to all
three. Fusing is idempotent, and ``is_repped`` says whether it happened (``reparameterize_model``
skips such layers).

The fused layer's attribute name is the official one of each family (:data:`ACBLOCK_FUSED_ATTR`,
:data:`REPVGG_FUSED_ATTR`); it is also the state-dict prefix that marks a deployed checkpoint.
"""

ACBLOCK_FUSED_ATTR = "fused_conv"  # ACNet's ACBlock in deploy form
REPVGG_FUSED_ATTR = "rbr_reparam"  # RepVGG's RepVGGBlock in deploy form
MOBILEONE_FUSED_ATTR = "reparam_conv"  # MobileOne's MobileOneBlock in deploy form
DBB_FUSED_ATTR = "dbb_reparam"  # DBB's DiverseBranchBlock in deploy form


class DeployProtocol:
    """Mixin: a block sets ``self.deploy`` in ``__init__`` and implements ``_fuse_branches()``.

    ``_fuse_branches`` builds the fused layer from the training-time branches and deletes them,
    under its framework's no-grad guard; this class calls it at most once.
    """

    deploy: bool

    @property
    def is_repped(self) -> bool:
        """Whether the block is in its fused (deploy) form, built so or switched.

        Returns:
            True once the block is fused.
        """
        return self.deploy

    def _fuse_branches(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fuse_branches()")

    def switch_to_deploy(self) -> None:
        """Fuse the training-time branches in place; a no-op once fused."""
        if not self.deploy:
            self._fuse_branches()
            self.deploy = True

    def reparameterize(self) -> None:
        """Same as :meth:`switch_to_deploy` (timm's name)."""
        self.switch_to_deploy()

    def re_parameterize(self) -> None:
        """Same as :meth:`switch_to_deploy` (PaddleClas's name)."""
        self.switch_to_deploy()
